/* SharedArea.xs, included by it: direct calls of the small functions.
 *
 * Off switches, for a maintainer who suspects this code:
 *   - at run time: SHAREDAREA_NO_DIRECT_CALLS=1 in the environment when the
 *     module loads (every call then goes through perl's pp_entersub);
 *   - at build time: perl Makefile.PL DEFINE=-DSHAREDAREA_NO_DIRECT_CALLS
 *     (none of this is compiled).
 * Perls before 5.14 (no cv_set_call_checker) never use it.  t/16-direct-calls.t
 * checks that every way of calling behaves as a plain sub call, and runs its
 * checks with the switch on too. */

/* ------------------------------------------------------------------------ */
/* Direct calls of the small functions                                      */
/* ------------------------------------------------------------------------ */

/* perl's pp_entersub is general: it finds out what is called, and around an
 * XSUB it opens a scope, raises the temps floor and copies arguments that are
 * pad temporaries.  The small functions (readN, writeN, incN, decN, read,
 * write) save nothing on the savestack, free no temps and only read their
 * arguments (they keep and change none), so all that is pure overhead, about
 * as large as the function itself.
 *
 * A call site that names one of them at compile time keeps its ordinary
 * entersub op (B, Deparse and op walkers see nothing new) with its pp
 * function set to S_pp_entersub_direct.  At run time that calls the XSUB
 * directly when what is called is still one of these XSUBs (the name not
 * redefined, localised or undefined), the call has its own arguments (not
 * "&name;"), is neither compiled for the debugger nor an lvalue, and nobody
 * (a profiler) has replaced perl's pp_entersub; it then keeps exactly one
 * result in scalar context, as pp_entersub does.  Every other call goes to
 * pp_entersub. */
#if PERL_REVISION == 5 && PERL_VERSION >= 14 && !defined(SHAREDAREA_NO_DIRECT_CALLS)
#  define SA_DIRECT_CALLS 1
#endif

#ifdef SA_DIRECT_CALLS
/* perl's own pp function of entersub (exported by libperl; its prototype is
 * only visible to the core): a profiler that hooks entersub replaces it in
 * PL_ppaddr, and then every call goes through that hook. */
PERL_CALLCONV OP *Perl_pp_entersub(pTHX);

/* The XSUBs called directly: read, write and the readN, writeN and
 * incN/decN ALIAS groups (set at BOOT; an unused entry stays NULL). */
#define DIRECT_XSUBS 5
static XSUBADDR_t S_direct_xsubs[DIRECT_XSUBS];

PERL_STATIC_INLINE int
S_is_direct(XSUBADDR_t xsub)
{
    int i;
    for (i = 0; i < DIRECT_XSUBS; i++)
        if (S_direct_xsubs[i] == xsub)
            return 1;
    return 0;
}

/* The CV an entersub would call for SV (the top of its stack: a glob, or a
 * reference to a CV), when it is one of the XSUBs above; else NULL. */
PERL_STATIC_INLINE CV *
S_direct_cv(pTHX_ SV *sv)
{
    CV *cv;
    if ((SvFLAGS(sv) & (SVf_ROK | SVs_GMG)) == SVf_ROK) {
        cv = (CV *)SvRV(sv);
        if (SvTYPE(cv) != SVt_PVCV || SvOBJECT(cv))
            return NULL;
    }
    else if (SvTYPE(sv) == SVt_PVGV && isGV_with_GP(sv))
        cv = GvCVu((GV *)sv);
    else
        return NULL;
    return cv && CvISXSUB(cv) && S_is_direct(CvXSUB(cv)) ? cv : NULL;
}

static OP *
S_pp_entersub_direct(pTHX)
{
    CV *cv;
    if (LIKELY((PL_op->op_flags & OPf_STACKED)
               && !(PL_op->op_private & (OPpENTERSUB_DB | OPpLVAL_INTRO))
               && !PL_curcopdb
               && PL_ppaddr[OP_ENTERSUB] == Perl_pp_entersub
               && (cv = S_direct_cv(aTHX_ *PL_stack_sp)) != NULL)) {
        SSize_t markix = TOPMARK;
        const bool is_scalar = GIMME_V == G_SCALAR;
        PL_stack_sp--;                                  /* what was called */
        CvXSUB(cv)(aTHX_ cv);
        if (is_scalar && ++markix != PL_stack_sp - PL_stack_base) {
            /* as pp_entersub: exactly one value in scalar context */
            if (markix > PL_stack_sp - PL_stack_base)
                *(PL_stack_base + markix) = &PL_sv_undef;
            else
                *(PL_stack_base + markix) = *PL_stack_sp;
            PL_stack_sp = PL_stack_base + markix;
        }
        return NORMAL;
    }
    return PL_ppaddr[OP_ENTERSUB](aTHX);
}

/* The call checker: perl's own argument handling, then the direct pp. */
static OP *
S_ck_direct(pTHX_ OP *entersubop, GV *namegv, SV *ckobj)
{
    entersubop = ck_entersub_args_proto_or_list(entersubop, namegv, ckobj);
    if (entersubop->op_type == OP_ENTERSUB && entersubop->op_ppaddr == Perl_pp_entersub)
        entersubop->op_ppaddr = S_pp_entersub_direct;
    return entersubop;
}

/* The functions called directly (their ALIAS groups share one XSUB): those
 * of uwsgi-functions.tsv with direct yes (t/00-load.t checks this list through
 * SharedArea::_calls_directly; t/16 calls each with its argument counts). */
static const char *const S_direct_names[] = {
    "sharedarea_read", "sharedarea_write",
    "sharedarea_read8", "sharedarea_read16", "sharedarea_read32", "sharedarea_read64",
    "sharedarea_write8", "sharedarea_write16", "sharedarea_write32", "sharedarea_write64",
    "sharedarea_inc8", "sharedarea_inc16", "sharedarea_inc32", "sharedarea_inc64",
    "sharedarea_dec8", "sharedarea_dec16", "sharedarea_dec32", "sharedarea_dec64",
    "sharedarea_readbyte", "sharedarea_readlong", "sharedarea_writebyte",
    "sharedarea_writelong", "sharedarea_inclong",
    NULL
};

/* BOOT: direct calls for SharedArea::NAME. */
static void
S_call_directly(pTHX_ const char *name)
{
    SV *full = sv_2mortal(newSVpvf("SharedArea::%s", name));
    CV *cv = get_cv(SvPV_nolen(full), 0);
    if (!cv || !CvISXSUB(cv))
        return;
    if (!S_is_direct(CvXSUB(cv))) {
        int i;
        for (i = 0; i < DIRECT_XSUBS && S_direct_xsubs[i]; i++)
            ;
        if (i == DIRECT_XSUBS)
            return;             /* table full: this one keeps pp_entersub */
        S_direct_xsubs[i] = CvXSUB(cv);
    }
    cv_set_call_checker(cv, S_ck_direct, (SV *)cv);
}

/* SharedArea::_calls_directly: whether a call site naming CV becomes a
 * direct call (its checker is ours and its XSUB is in the table), so that
 * t/00-load.t can check S_direct_names against uwsgi-functions.tsv. */
static int
S_calls_directly(pTHX_ CV *cv)
{
    Perl_call_checker ckfun;
    SV *ckobj;
    if (!CvISXSUB(cv) || !S_is_direct(CvXSUB(cv)))
        return 0;
    cv_get_call_checker(cv, &ckfun, &ckobj);
    return ckfun == S_ck_direct;
}
#endif
