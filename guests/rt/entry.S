/* SPDX-License-Identifier: MIT */
/*
 * entry.S - where every vCPU starts: already in 64-bit mode, with its stack
 * and rdi = vCPU index, rsi = vCPU count, rdx = RAM size (gv_abi.h).
 */
	.section .text.entry, "ax"
	.globl _start
	.type _start, @function
_start:
	xorl	%ebp, %ebp
	andq	$-16, %rsp		/* SysV: 16-byte aligned at the call */
	call	gv_start		/* does not return */
1:	hlt
	jmp	1b
	.size _start, . - _start

	.section .note.GNU-stack, "", @progbits
