//! Which family handles an instruction: one jump on the mnemonic instead of asking each
//! family in turn.

use iced_x86::Mnemonic as M;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Fam {
    Moves,
    Float,
    Convert,
    Compare,
    Shuffle,
    Strcmp,
    Mmx,
    /// Everything else (the integer family turns down what it does not know).
    Integer,
}

pub(super) fn family(m: M) -> Fam {
    match m {
        M::Lddqu
        | M::Movapd
        | M::Movaps
        | M::Movd
        | M::Movddup
        | M::Movdqa
        | M::Movdqu
        | M::Movhlps
        | M::Movhpd
        | M::Movhps
        | M::Movlhps
        | M::Movlpd
        | M::Movlps
        | M::Movmskpd
        | M::Movmskps
        | M::Movntdq
        | M::Movntdqa
        | M::Movntpd
        | M::Movntps
        | M::Movntq
        | M::Movq
        | M::Movsd
        | M::Movshdup
        | M::Movsldup
        | M::Movss
        | M::Movupd
        | M::Movups
        | M::Pmovmskb => Fam::Moves,
        M::Addpd
        | M::Addps
        | M::Addsd
        | M::Addss
        | M::Addsubpd
        | M::Addsubps
        | M::Divpd
        | M::Divps
        | M::Divsd
        | M::Divss
        | M::Dppd
        | M::Dpps
        | M::Haddpd
        | M::Haddps
        | M::Hsubpd
        | M::Hsubps
        | M::Maxpd
        | M::Maxps
        | M::Maxsd
        | M::Maxss
        | M::Minpd
        | M::Minps
        | M::Minsd
        | M::Minss
        | M::Mulpd
        | M::Mulps
        | M::Mulsd
        | M::Mulss
        | M::Rcpps
        | M::Rcpss
        | M::Roundpd
        | M::Roundps
        | M::Roundsd
        | M::Roundss
        | M::Rsqrtps
        | M::Rsqrtss
        | M::Sqrtpd
        | M::Sqrtps
        | M::Sqrtsd
        | M::Sqrtss
        | M::Subpd
        | M::Subps
        | M::Subsd
        | M::Subss => Fam::Float,
        M::Cvtdq2pd
        | M::Cvtdq2ps
        | M::Cvtpd2dq
        | M::Cvtpd2pi
        | M::Cvtpd2ps
        | M::Cvtpi2pd
        | M::Cvtpi2ps
        | M::Cvtps2dq
        | M::Cvtps2pd
        | M::Cvtps2pi
        | M::Cvtsd2si
        | M::Cvtsd2ss
        | M::Cvtsi2sd
        | M::Cvtsi2ss
        | M::Cvtss2sd
        | M::Cvtss2si
        | M::Cvttpd2dq
        | M::Cvttpd2pi
        | M::Cvttps2dq
        | M::Cvttps2pi
        | M::Cvttsd2si
        | M::Cvttss2si => Fam::Convert,
        M::Cmppd | M::Cmpps | M::Cmpsd | M::Cmpss | M::Comisd | M::Comiss | M::Ucomisd | M::Ucomiss => {
            Fam::Compare
        }
        M::Blendpd
        | M::Blendps
        | M::Blendvpd
        | M::Blendvps
        | M::Extractps
        | M::Insertps
        | M::Mpsadbw
        | M::Palignr
        | M::Pblendvb
        | M::Pblendw
        | M::Pextrb
        | M::Pextrd
        | M::Pextrq
        | M::Pextrw
        | M::Phminposuw
        | M::Pinsrb
        | M::Pinsrd
        | M::Pinsrq
        | M::Pinsrw
        | M::Pmovsxbd
        | M::Pmovsxbq
        | M::Pmovsxbw
        | M::Pmovsxdq
        | M::Pmovsxwd
        | M::Pmovsxwq
        | M::Pmovzxbd
        | M::Pmovzxbq
        | M::Pmovzxbw
        | M::Pmovzxdq
        | M::Pmovzxwd
        | M::Pmovzxwq
        | M::Pshufb
        | M::Pshufd
        | M::Pshufhw
        | M::Pshuflw
        | M::Pshufw
        | M::Shufpd
        | M::Shufps => Fam::Shuffle,
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64 | M::Pcmpistri | M::Pcmpistrm => {
            Fam::Strcmp
        }
        M::Maskmovdqu | M::Maskmovq | M::Movdq2q | M::Movq2dq => Fam::Mmx,
        _ => Fam::Integer,
    }
}
