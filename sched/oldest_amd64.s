#include "textflag.h"

// func oldestPairAVX2(s1, s2 *[8]uint32, t uint32) (w int, age uint32)
//
// The ages t - s are 16 unsigned 32-bit lanes in Y1 (s1) and Y2 (s2); their maximum is
// reduced across the lanes into every lane of X3, then compared back with each vector:
// the lowest set bit of the two masks (s1's in bits 0-7, s2's in bits 8-15) is the way.
TEXT ·oldestPairAVX2(SB), NOSPLIT, $0-36
	MOVQ	s1+0(FP), AX
	MOVQ	s2+8(FP), BX
	MOVL	t+16(FP), DX
	VMOVD	DX, X0
	VPBROADCASTD	X0, Y0
	VPSUBD	(AX), Y0, Y1
	VPSUBD	(BX), Y0, Y2
	VPMAXUD	Y2, Y1, Y3
	VEXTRACTI128	$1, Y3, X4
	VPMAXUD	X4, X3, X3
	VPSHUFD	$0x4e, X3, X4
	VPMAXUD	X4, X3, X3
	VPSHUFD	$0xb1, X3, X4
	VPMAXUD	X4, X3, X3
	VPBROADCASTD	X3, Y3
	VPCMPEQD	Y3, Y1, Y4
	VMOVMSKPS	Y4, CX
	VPCMPEQD	Y3, Y2, Y5
	VMOVMSKPS	Y5, DX
	SHLL	$8, DX
	ORL	DX, CX
	BSFL	CX, CX
	VMOVD	X3, DX
	VZEROUPPER
	MOVQ	CX, w+24(FP)
	MOVL	DX, age+32(FP)
	RET

// func maxAgeAVX2(s *[8]uint32, t uint32) uint32
//
// The largest of the eight ages t - s, reduced as in oldestPairAVX2.
TEXT ·maxAgeAVX2(SB), NOSPLIT, $0-20
	MOVQ	s+0(FP), AX
	MOVL	t+8(FP), DX
	VMOVD	DX, X0
	VPBROADCASTD	X0, Y0
	VPSUBD	(AX), Y0, Y1
	VEXTRACTI128	$1, Y1, X2
	VPMAXUD	X2, X1, X1
	VPSHUFD	$0x4e, X1, X2
	VPMAXUD	X2, X1, X1
	VPSHUFD	$0xb1, X1, X2
	VPMAXUD	X2, X1, X1
	VMOVD	X1, DX
	VZEROUPPER
	MOVL	DX, ret+16(FP)
	RET
