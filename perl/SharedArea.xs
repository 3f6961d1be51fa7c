/*
 * SharedArea.xs - the Perl face of the SharedArea C ABI (include/sharedarea.h).
 *
 * This file holds no shared-memory logic: the Rust core does every range
 * check, lock and counter.  What lives here is the conversion of Perl values
 * to C arguments, done in ONE place (S_arg_* below), and the turning of a
 * failed C call into a croak that names the Perl function, the area and the
 * cause (S_croak_core, which re-uses the detail of sharedarea_last_error()).
 *
 * Layout: small S_ helpers first, taking aTHX_; the MODULE section at the
 * end only checks the argument count and calls one helper per function.
 */

#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>

/* Code that runs only when a call fails: out of line, away from the fast
 * paths (gcc and clang). */
#if defined(__GNUC__) || defined(__clang__)
#  define SA_COLD __attribute__((cold, noinline))
#else
#  define SA_COLD
#endif

/* MakeMaker defines VERSION on the command line; the core header may too. */
#undef VERSION
#include "sharedarea.h"
#undef VERSION

/* Names of the backing kinds, indexed by SHAREDAREA_BACKING_*. */
static const char *const S_backing_names[] = {
    "anonymous", "file", "fd", "named", "pointer"
};

/* ------------------------------------------------------------------------ */
/* Croaking                                                                 */
/* ------------------------------------------------------------------------ */

/* Every failure dies with a SharedArea::Error object (see SharedArea.pm):
 * { status => SHAREDAREA_E_*, function => FNAME, area => ID or undef,
 *   message => CAUSE, cause => "area ID: CAUSE",
 *   text => "FNAME: area ID: CAUSE at FILE line N.\n" }
 * whose string is TEXT, the very text a plain croak would give, and sets
 * $SharedArea::STATUS to the status: Perl code decides on the status, never
 * on the wording.  AREA_IN_CAUSE: the cause already starts with
 * "area ID: " (the core's detail), so it is not added again. */
static void S_throw(pTHX_ const char *fname, IV id, int32_t status, SV *cause,
                    int area_in_cause) __attribute__noreturn__ SA_COLD;

static void
S_throw(pTHX_ const char *fname, IV id, int32_t status, SV *cause, int area_in_cause)
{
    HV *err = newHV();
    SV *rv = sv_2mortal(newRV_noinc((SV *)err));
    SV *text = id >= 0 && !area_in_cause
        ? newSVpvf("%s: area %" IVdf ": %" SVf, fname, id, SVfARG(cause))
        : newSVpvf("%s: %" SVf, fname, SVfARG(cause));
    SV *message = newSVsv(cause);
    SV *placed;
    sv_2mortal(text);
    if (area_in_cause && id >= 0) {
        /* the cause without the core's "area ID: ", which the area field holds */
        SV *lead = sv_2mortal(newSVpvf("area %" IVdf ": ", id));
        STRLEN n, ln;
        const char *c = SvPV_const(cause, n);
        const char *l = SvPV_const(lead, ln);
        if (n >= ln && memEQ(c, l, ln))
            sv_setpvn(message, c + ln, n - ln);
    }
    sv_setiv(get_sv("SharedArea::STATUS", GV_ADD), (IV)status);
    (void)hv_stores(err, "status", newSViv((IV)status));
    (void)hv_stores(err, "function", newSVpv(fname, 0));
    (void)hv_stores(err, "area", id >= 0 ? newSViv(id) : newSV(0));
    (void)hv_stores(err, "message", message);
    /* the text without "FNAME: " (for wrappers that report it as their own) */
    (void)hv_stores(err, "cause", newSVpvn(SvPVX(text) + strlen(fname) + 2,
                                           SvCUR(text) - strlen(fname) - 2));
    /* " at FILE line N.\n", as croak adds to a string (mess_sv: a new mortal) */
    placed = mess_sv(text, 0);
    (void)hv_stores(err, "text", SvREFCNT_inc_simple_NN(placed));
    sv_bless(rv, gv_stashpvs("SharedArea::Error", GV_ADD));
    croak_sv(rv);
}

/* die "FNAME: area ID: <formatted cause>" (or "FNAME: <cause>" when id < 0)
 * with STATUS (see S_throw) */
static void S_die(pTHX_ const char *fname, IV id, int32_t status, const char *fmt, ...)
    __attribute__noreturn__ __attribute__format__(__printf__, pTHX_4, pTHX_5) SA_COLD;

static void
S_die(pTHX_ const char *fname, IV id, int32_t status, const char *fmt, ...)
{
    va_list ap;
    SV *cause = sv_2mortal(newSVpvs(""));
    va_start(ap, fmt);
    sv_vcatpvf(cause, fmt, &ap);
    va_end(ap);
    S_throw(aTHX_ fname, id, status, cause, 0);
}

/* The detail of this thread's last core error, without the C function's
 * name ("area 0: 16 bytes at ..."), or NULL when the core left none. */
static const char *
S_core_detail(void)
{
    const char *detail = sharedarea_last_error_detail();
    return detail && *detail ? detail : NULL;
}

/* A C call failed with STATUS: croak "FNAME: <detail from the core>". */
static void S_croak_core(pTHX_ const char *fname, IV id, int64_t status)
    __attribute__noreturn__ SA_COLD;

static void
S_croak_core(pTHX_ const char *fname, IV id, int64_t status)
{
    const char *detail = S_core_detail();
    if (detail)
        S_throw(aTHX_ fname, id, (int32_t)status, sv_2mortal(newSVpv(detail, 0)), 1);
    S_die(aTHX_ fname, id, (int32_t)status, "%s", sharedarea_strerror((int32_t)status));
}

static void S_croak_usage(pTHX_ const char *usage) __attribute__noreturn__ SA_COLD;

static void
S_croak_usage(pTHX_ const char *usage)
{
    Perl_croak(aTHX_ "Usage: %s", usage);
}

/* items must be in [min, max]; otherwise croak "Usage: USAGE". */
PERL_STATIC_INLINE void
S_check_items(pTHX_ I32 items, I32 min, I32 max, const char *usage)
{
    if (UNLIKELY(items < min || items > max))
        S_croak_usage(aTHX_ usage);
}

/* ------------------------------------------------------------------------ */
/* Argument conversion: the one place where Perl values become C numbers    */
/* ------------------------------------------------------------------------ */

typedef enum {
    ARG_OK = 0,
    ARG_UNDEF,
    ARG_REF,
    ARG_NOT_NUMBER,
    ARG_NOT_FINITE,
    ARG_NEGATIVE,
    ARG_NOT_INTEGER,
    ARG_TOO_BIG
} arg_status;

/* What a Perl scalar holds as a number. */
typedef struct {
    int is_int;   /* an exact integer: value in iv (negative) or uv */
    int negative; /* with is_int: the value is iv < 0 */
    IV iv;
    UV uv;
    NV nv;        /* without is_int: the floating value */
} num_t;

/* How deep an object's 0+ overload may hand out further objects before the
 * argument is refused (a 0+ that returns itself or loops). */
#define NUMIFY_DEPTH 8

/* Classify SV (get-magic already called) as a number, the way perl's own
 * builtins take a number (SvIV: what substr does with its position), but
 * strictly: a string is judged by its text (grok_number), so "abc", "",
 * "12abc", "0x10", "Inf" and "NaN" are refused, where SvIV would warn and
 * give 0.  What perl accepts silently is accepted: " 10", "10\n", "+10",
 * "1e1", "0 but true", dualvars (their number), objects through their 0+
 * overload (or, as perl does, through "" when 0+ is absent).
 *
 * An accepted plain scalar gets its numeric value cached, as SvIV caches
 * it (IOK, and NOK for "1e1"): after uwsgi::sharedarea_read(0, $p, 1) the
 * string $p = "6" is a number to JSON encoders, exactly as under uWSGI. */
static arg_status
S_classify_depth(pTHX_ SV *sv, num_t *n, int depth)
{
    n->is_int = 0;
    n->negative = 0;
    if (!SvOK(sv))
        return ARG_UNDEF;
    if (SvROK(sv)) {
        /* A number object (Math::BigInt, "use bigint", any class with 0+):
         * its 0+ value, as SvIV takes it; Math::BigInt's numify is exact in
         * 64 bits.  A plain reference stays refused (SvIV would give its
         * address). */
        if (SvAMAGIC(sv) && depth < NUMIFY_DEPTH) {
            SV *num = AMG_CALLunary(sv, numer_amg);
            if (num && !(SvROK(num) && SvRV(num) == SvRV(sv))) {
                SvGETMAGIC(num);
                return S_classify_depth(aTHX_ num, n, depth + 1);
            }
        }
        return ARG_REF;
    }
    if (SvIOK(sv))
        goto integer;
    if (SvNOK(sv))
        goto floating;
    if (SvPOKp(sv)) {
        STRLEN len;
        const char *pv = SvPV_nomg_const(sv, len);
        UV uv = 0;
        int flags = grok_number(pv, len, &uv);
        if (!flags)
            return ARG_NOT_NUMBER;
        if (flags & (IS_NUMBER_INFINITY | IS_NUMBER_NAN))
            return ARG_NOT_FINITE;
        if ((flags & (IS_NUMBER_IN_UV | IS_NUMBER_NOT_INT
                      | IS_NUMBER_GREATER_THAN_UV_MAX)) == IS_NUMBER_IN_UV) {
            n->is_int = 1;
            if ((flags & IS_NUMBER_NEG) && uv) {
                if (uv > (UV)IV_MAX + 1) {          /* below -2**63 */
                    n->is_int = 0;
                    n->nv = -(NV)uv;
                    goto cache;
                }
                n->negative = 1;
                n->iv = uv == (UV)IV_MAX + 1 ? IV_MIN : -(IV)uv;
            }
            else
                n->uv = uv;
            goto cache;
        }
        /* "1e1", "1.5", huge: the value perl gives the text, computed on a
         * copy so that what is cached below is exactly what SvIV caches */
        n->nv = SvNV_nomg(sv_2mortal(newSVpvn(pv, len)));
        goto cache;
    }
    if (SvIOKp(sv))
        goto integer;
    if (SvNOKp(sv))
        goto floating;
    return ARG_NOT_NUMBER;

  integer:
    n->is_int = 1;
    if (SvIsUV(sv))
        n->uv = SvUVX(sv);
    else if (SvIVX(sv) < 0) {
        n->negative = 1;
        n->iv = SvIVX(sv);
    }
    else
        n->uv = (UV)SvIVX(sv);
    return ARG_OK;

  floating:
    n->nv = SvNVX(sv);
    if (Perl_isnan(n->nv) || Perl_isinf(n->nv))
        return ARG_OK;          /* refused by the caller; nothing to cache */
  cache:
    if (!SvIOK(sv))
        (void)SvIV_nomg(sv);    /* as SvIV does: the number stays in the argument */
    return ARG_OK;
}

PERL_STATIC_INLINE arg_status
S_classify(pTHX_ SV *sv, num_t *n)
{
    return S_classify_depth(aTHX_ sv, n, 0);
}

#define TWO_POW_64 18446744073709551616.0
#define TWO_POW_63 9223372036854775808.0

/* A non-negative integer below 2**64 (an id, position, length, count). */
static arg_status
S_num_u64(pTHX_ SV *sv, uint64_t *out)
{
    num_t n;
    arg_status st = S_classify(aTHX_ sv, &n);
    if (st != ARG_OK)
        return st;
    if (n.is_int) {
        if (n.negative)
            return ARG_NEGATIVE;
        *out = (uint64_t)n.uv;
        return ARG_OK;
    }
    if (Perl_isnan(n.nv) || Perl_isinf(n.nv))
        return ARG_NOT_FINITE;
    if (n.nv < 0)
        return ARG_NEGATIVE;
    if (n.nv != Perl_floor(n.nv))
        return ARG_NOT_INTEGER;
    if (n.nv >= TWO_POW_64)
        return ARG_TOO_BIG;
    *out = (uint64_t)n.nv;
    return ARG_OK;
}

/* An integer in [-2**63, 2**64): its 64 low bits, two's complement. */
static arg_status
S_num_bits64(pTHX_ SV *sv, uint64_t *out)
{
    num_t n;
    arg_status st = S_classify(aTHX_ sv, &n);
    if (st != ARG_OK)
        return st;
    if (n.is_int) {
        *out = n.negative ? (uint64_t)n.iv : (uint64_t)n.uv;
        return ARG_OK;
    }
    if (Perl_isnan(n.nv) || Perl_isinf(n.nv))
        return ARG_NOT_FINITE;
    if (n.nv != Perl_floor(n.nv))
        return ARG_NOT_INTEGER;
    if (n.nv >= TWO_POW_64 || n.nv < -TWO_POW_63)
        return ARG_TOO_BIG;
    *out = n.nv < 0 ? (uint64_t)(int64_t)n.nv : (uint64_t)n.nv;
    return ARG_OK;
}

/* A finite non-negative number, fractions allowed (seconds, milliseconds). */
static arg_status
S_num_nonneg(pTHX_ SV *sv, NV *out)
{
    num_t n;
    arg_status st = S_classify(aTHX_ sv, &n);
    if (st != ARG_OK)
        return st;
    if (n.is_int) {
        if (n.negative)
            return ARG_NEGATIVE;
        *out = (NV)n.uv;
        return ARG_OK;
    }
    if (Perl_isnan(n.nv) || Perl_isinf(n.nv))
        return ARG_NOT_FINITE;
    if (n.nv < 0)
        return ARG_NEGATIVE;
    *out = n.nv;
    return ARG_OK;
}

/* The value of SV as shown in a message: numbers as perl prints them,
 * anything else quoted and shortened. */
static const char *
S_show(pTHX_ SV *sv, arg_status st)
{
    SV *copy = sv_2mortal(newSVsv_flags(sv, SV_NOSTEAL));
    STRLEN len;
    const char *pv = SvPV_nomg_const(copy, len);
    if (st == ARG_NOT_NUMBER) {
        SV *out = sv_newmortal();
        pv_pretty(out, pv, len, 40, NULL, NULL,
                  PERL_PV_PRETTY_QUOTE | PERL_PV_PRETTY_ELLIPSES
                  | (SvUTF8(copy) ? PERL_PV_ESCAPE_UNI : 0));
        return SvPV_nolen(out);
    }
    return pv;
}

/* croak for argument WHAT (e.g. "position") of FNAME that failed with ST. */
static void S_croak_arg(pTHX_ const char *fname, IV id, const char *what,
                        SV *sv, arg_status st, const char *too_big)
    __attribute__noreturn__ SA_COLD;

static void
S_croak_arg(pTHX_ const char *fname, IV id, const char *what, SV *sv,
            arg_status st, const char *too_big)
{
    switch (st) {
    case ARG_UNDEF:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s is undef", what);
    case ARG_REF:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s is a reference, not a number", what);
    case ARG_NOT_NUMBER:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s %s is not a number", what, S_show(aTHX_ sv, st));
    case ARG_NOT_FINITE:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s %s is not a finite number", what, S_show(aTHX_ sv, st));
    case ARG_NEGATIVE:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s %s is negative", what, S_show(aTHX_ sv, st));
    case ARG_NOT_INTEGER:
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s %s is not an integer", what, S_show(aTHX_ sv, st));
    case ARG_TOO_BIG:
    default:
        S_die(aTHX_ fname, id, SHAREDAREA_E_OUT_OF_RANGE, "%s %s %s", what, S_show(aTHX_ sv, st), too_big);
    }
}

/* The argument helpers below are called on every fast operation, so each is
 * split in two: an inline test for the common case (a plain integer or a
 * plain byte string, as literal constants, loop counters and ordinary
 * variables are), and an out-of-line _slow function that does the full
 * classification, get-magic and croaking.  The inline test only takes values
 * the slow path would accept with the same result, so both give the same
 * answers; the split only keeps the cold code out of the callers. */

/* A plain integer: IOK with no string, float, reference or get-magic (a
 * literal constant is IOK|pIOK|READONLY|PROTECT: plain). */
#define PLAIN_IV(sv) \
    ((SvFLAGS(sv) & (SVf_IOK | SVf_POK | SVf_NOK | SVf_ROK | SVs_GMG)) == SVf_IOK)
#define PLAIN_NONNEG_IV(sv) (PLAIN_IV(sv) && (SvIsUV(sv) || SvIVX(sv) >= 0))

/* An id no area can have (negative, not an integer, or past int32_t, so it
 * cannot be passed to the core): die as the core does for an area that does
 * not exist ("area 7: no such area (the only area is 0)"), one text for the
 * condition, about the id as SHOWN.  The core's detail is taken from a call
 * on area -1, which never exists. */
static void S_die_no_such_area(pTHX_ const char *fname, const char *shown)
    __attribute__noreturn__ SA_COLD;

static void
S_die_no_such_area(pTHX_ const char *fname, const char *shown)
{
    static const char lead[] = "area -1: ";
    uint64_t ignored;
    const char *detail = NULL;
    if (sharedarea_updates(-1, &ignored) == SHAREDAREA_E_NO_SUCH_AREA)
        detail = S_core_detail();
    if (detail && strnEQ(detail, lead, sizeof lead - 1))
        S_die(aTHX_ fname, -1, SHAREDAREA_E_NO_SUCH_AREA, "area %s: %s", shown,
              detail + sizeof lead - 1);
    S_die(aTHX_ fname, -1, SHAREDAREA_E_NO_SUCH_AREA, "area %s: %s", shown,
          sharedarea_strerror(SHAREDAREA_E_NO_SUCH_AREA));
}

/* An area id: a non-negative integer that fits int32_t.  Whether the area
 * exists is the core's to say; a negative or absurd id is "no such area". */
static int32_t S_arg_id_slow(pTHX_ const char *fname, SV *sv) SA_COLD;

PERL_STATIC_INLINE int32_t
S_arg_id(pTHX_ const char *fname, SV *sv)
{
    if (LIKELY(PLAIN_NONNEG_IV(sv) && SvUVX(sv) <= (UV)INT32_MAX))
        return (int32_t)SvUVX(sv);
    return S_arg_id_slow(aTHX_ fname, sv);
}

static int32_t
S_arg_id_slow(pTHX_ const char *fname, SV *sv)
{
    uint64_t v = 0;
    arg_status st;
    SvGETMAGIC(sv);
    st = S_num_u64(aTHX_ sv, &v);
    switch (st) {
    case ARG_OK:
        if (v <= (uint64_t)INT32_MAX)
            return (int32_t)v;
        /* FALLTHROUGH */
    case ARG_NEGATIVE:
    case ARG_NOT_INTEGER:
    case ARG_NOT_FINITE:
    case ARG_TOO_BIG:
        S_die_no_such_area(aTHX_ fname, S_show(aTHX_ sv, st));
    default:
        S_croak_arg(aTHX_ fname, -1, "area id", sv, st, "");
    }
}

/* A position, length or count: an integer in [0, 2**64). */
static uint64_t S_arg_u64_slow(pTHX_ const char *fname, IV id, const char *what, SV *sv)
    SA_COLD;

PERL_STATIC_INLINE uint64_t
S_arg_u64(pTHX_ const char *fname, IV id, const char *what, SV *sv)
{
    if (LIKELY(PLAIN_NONNEG_IV(sv)))
        return (uint64_t)SvUVX(sv);
    return S_arg_u64_slow(aTHX_ fname, id, what, sv);
}

static uint64_t
S_arg_u64_slow(pTHX_ const char *fname, IV id, const char *what, SV *sv)
{
    uint64_t v = 0;
    arg_status st;
    SvGETMAGIC(sv);
    st = S_num_u64(aTHX_ sv, &v);
    if (st != ARG_OK)
        S_croak_arg(aTHX_ fname, id, what, sv, st, "is too large (2**64 or more)");
    return v;
}

/* An integer value for writeN/incN/decN: its low 64 bits (an IV and a UV
 * hold the same bits, two's complement). */
static uint64_t S_arg_bits64_slow(pTHX_ const char *fname, IV id, const char *what, SV *sv)
    SA_COLD;

PERL_STATIC_INLINE uint64_t
S_arg_bits64(pTHX_ const char *fname, IV id, const char *what, SV *sv)
{
    if (LIKELY(PLAIN_IV(sv)))
        return (uint64_t)SvUVX(sv);
    return S_arg_bits64_slow(aTHX_ fname, id, what, sv);
}

static uint64_t
S_arg_bits64_slow(pTHX_ const char *fname, IV id, const char *what, SV *sv)
{
    uint64_t v = 0;
    arg_status st;
    SvGETMAGIC(sv);
    st = S_num_bits64(aTHX_ sv, &v);
    if (st != ARG_OK)
        S_croak_arg(aTHX_ fname, id, what, sv, st,
                    "does not fit in 64 bits (-2**63 .. 2**64-1)");
    return v;
}

/* A non-negative number of seconds or milliseconds, fractions allowed. */
static NV
S_arg_nonneg(pTHX_ const char *fname, IV id, const char *what, SV *sv)
{
    NV v = 0;
    arg_status st;
    SvGETMAGIC(sv);
    st = S_num_nonneg(aTHX_ sv, &v);
    if (st != ARG_OK)
        S_croak_arg(aTHX_ fname, id, what, sv, st, "is too large");
    return v;
}

/* The bytes of a Perl string argument: its internal bytes (SvPV), as
 * uWSGI takes them.  A character string (UTF8 flag on) is its UTF-8
 * encoding, wide characters included; a byte string is its bytes; a number
 * or an object is its string form.  Only undef is refused. */
static const char *S_arg_bytes_slow(pTHX_ const char *fname, IV id, const char *what,
                                    SV *sv, STRLEN *len) SA_COLD;

/* A plain string: POK (UTF8 or not), no get-magic. */
#define PLAIN_STRING(sv) ((SvFLAGS(sv) & (SVf_POK | SVs_GMG)) == SVf_POK)

PERL_STATIC_INLINE const char *
S_arg_bytes(pTHX_ const char *fname, IV id, const char *what, SV *sv, STRLEN *len)
{
    if (LIKELY(PLAIN_STRING(sv))) {
        *len = SvCUR(sv);
        return SvPVX_const(sv);
    }
    return S_arg_bytes_slow(aTHX_ fname, id, what, sv, len);
}

static const char *
S_arg_bytes_slow(pTHX_ const char *fname, IV id, const char *what, SV *sv, STRLEN *len)
{
    SvGETMAGIC(sv);
    if (!SvOK(sv))
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "%s is undef", what);
    return SvPV_nomg_const(sv, *len);
}

/* ------------------------------------------------------------------------ */
/* Byte ranges                                                              */
/* ------------------------------------------------------------------------ */

/* The number of bytes a read of (pos, len) covers; croaks when out of range. */
static uint64_t
S_extent(pTHX_ const char *fname, int32_t id, uint64_t pos, uint64_t len)
{
    uint64_t n = 0;
    int32_t st = sharedarea_extent(id, pos, len, &n);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    if (n >= (uint64_t)SSize_t_MAX)
        S_die(aTHX_ fname, id, SHAREDAREA_E_OUT_OF_RANGE, "%" UVuf " bytes do not fit in a Perl string", (UV)n);
    return n;
}

/* Results up to this many bytes are built in the calling op's TARG, the
 * pad temporary perl gives every call site for its result: no new SV and no
 * malloc per call.  Perl copies a TARG wherever a value is kept (assignment,
 * push, map, sort, foreach and @_ aliases, references, sub returns), as it
 * does for its own ops' results, so the caller cannot tell the difference.
 * Longer results get a new mortal, whose buffer an assignment takes over
 * without a copy, and no call site keeps a large buffer alive. */
#define READ_TARG_MAX 4096

/* read(id, pos[, len]): a byte string, in TARG when it is small. */
static SV *
S_read(pTHX_ const char *fname, SV *targ, SV *id_sv, SV *pos_sv, SV *len_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t len = len_sv ? S_arg_u64(aTHX_ fname, id, "length", len_sv) : 0;
    /* The range is checked before anything large is allocated.  A small
     * explicit length is the byte count already: sharedarea_read checks that
     * range itself and words a failure as sharedarea_extent would. */
    uint64_t n = len && len <= READ_TARG_MAX ? len : S_extent(aTHX_ fname, id, pos, len);
    SV *out = n <= READ_TARG_MAX ? targ : sv_newmortal();
    char *pv;
    int64_t got;

    /* a private buffer: one shared copy-on-write with an earlier result
     * stays with that result */
    SV_CHECK_THINKFIRST_COW_DROP(out);
    SvUPGRADE(out, SVt_PV);
    pv = SvGROW(out, (STRLEN)n + 1);
    got = sharedarea_read(id, pos, pv, n);
    if (got < 0)
        S_croak_core(aTHX_ fname, id, got);
    SvCUR_set(out, (STRLEN)got);
    pv[got] = '\0';
    SvPOK_only(out);        /* a byte string: no UTF8, no stale number */
    SvSETMAGIC(out);
    return out;
}

/* readfast(id, pos, $buf[, len]): read into $buf's own buffer; the count. */
static IV
S_readfast(pTHX_ const char *fname, SV *id_sv, SV *pos_sv, SV *buf, SV *len_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t len = len_sv ? S_arg_u64(aTHX_ fname, id, "length", len_sv) : 0;
    uint64_t n;
    int64_t got;
    char *pv;

    SvGETMAGIC(buf);
    if (SvREADONLY(buf))
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT,
              "Modification of a read-only value attempted (the buffer is read-only)");
    if (SvROK(buf))
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "the buffer is a reference, not a string");
    if (isGV_with_GP(buf) || SvTYPE(buf) >= SVt_PVAV)
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT, "the buffer is not a plain scalar");
    if (SvSMAGICAL(buf) && mg_find(buf, PERL_MAGIC_sv))
        S_die(aTHX_ fname, id, SHAREDAREA_E_INVALID_ARGUMENT,
              "the buffer is a special variable ($1, $&, ...): give a plain scalar");

    n = S_extent(aTHX_ fname, id, pos, len);

    /* Make $buf a private, writable string (un-share a copy-on-write
     * buffer, stringify a number) and grow it only when too small. */
    if (!SvOK(buf))
        sv_setpvs(buf, "");
    (void)SvPV_force_nomg_nolen(buf);
    if (SvLEN(buf) < (STRLEN)n + 1)
        pv = SvGROW(buf, (STRLEN)n + 1);
    else
        pv = SvPVX(buf);

    got = sharedarea_read(id, pos, pv, n);
    if (got < 0)
        S_croak_core(aTHX_ fname, id, got);
    SvCUR_set(buf, (STRLEN)got);
    pv[got] = '\0';
    SvPOK_only(buf);        /* a byte string: no UTF8, no stale number */
    SvSETMAGIC(buf);
    return (IV)got;
}

/* write(id, pos, bytes) */
static void
S_write(pTHX_ const char *fname, SV *id_sv, SV *pos_sv, SV *data)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    STRLEN len;
    const char *pv = S_arg_bytes(aTHX_ fname, id, "data", data, &len);
    int32_t st = sharedarea_write(id, pos, pv, (uint64_t)len);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
}

/* ------------------------------------------------------------------------ */
/* Integers: width is 8, 16, 32 or 64                                       */
/* ------------------------------------------------------------------------ */

/* These run on every readN/writeN/incN/decN call: inline, so an XSUB is one
 * function from its argument checks to the core call (failures leave through
 * the cold croak helpers). */

PERL_STATIC_INLINE IV
S_read_int(pTHX_ const char *fname, int width, int32_t id, SV *pos_sv)
{
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    int32_t st;
    IV v = 0;
    switch (width) {
    case 8:  { int8_t  x = 0; st = sharedarea_read8(id, pos, &x);  v = x; break; }
    case 16: { int16_t x = 0; st = sharedarea_read16(id, pos, &x); v = x; break; }
    case 32: { int32_t x = 0; st = sharedarea_read32(id, pos, &x); v = x; break; }
    default: { int64_t x = 0; st = sharedarea_read64(id, pos, &x); v = (IV)x; break; }
    }
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    return v;
}

PERL_STATIC_INLINE void
S_write_int(pTHX_ const char *fname, int width, int32_t id, SV *pos_sv, SV *val_sv)
{
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t bits = S_arg_bits64(aTHX_ fname, id, "value", val_sv);
    int32_t st;
    switch (width) {   /* keep the low bits, two's complement, as pack does */
    case 8:  st = sharedarea_write8(id, pos, (int8_t)(uint8_t)bits); break;
    case 16: st = sharedarea_write16(id, pos, (int16_t)(uint16_t)bits); break;
    case 32: st = sharedarea_write32(id, pos, (int32_t)(uint32_t)bits); break;
    default: st = sharedarea_write64(id, pos, (int64_t)bits); break;
    }
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
}

/* inc (dec == 0) or dec: the new value; amount_sv NULL means 1. */
PERL_STATIC_INLINE IV
S_add_int(pTHX_ const char *fname, int width, int dec, int32_t id,
          SV *pos_sv, SV *amount_sv)
{
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t a = amount_sv ? S_arg_bits64(aTHX_ fname, id, "amount", amount_sv) : 1;
    int32_t st;
    IV v = 0;
    switch (width) {
    case 8: {
        int8_t x = 0;
        st = dec ? sharedarea_dec8(id, pos, (int8_t)(uint8_t)a, &x)
                 : sharedarea_inc8(id, pos, (int8_t)(uint8_t)a, &x);
        v = x; break;
    }
    case 16: {
        int16_t x = 0;
        st = dec ? sharedarea_dec16(id, pos, (int16_t)(uint16_t)a, &x)
                 : sharedarea_inc16(id, pos, (int16_t)(uint16_t)a, &x);
        v = x; break;
    }
    case 32: {
        int32_t x = 0;
        st = dec ? sharedarea_dec32(id, pos, (int32_t)(uint32_t)a, &x)
                 : sharedarea_inc32(id, pos, (int32_t)(uint32_t)a, &x);
        v = x; break;
    }
    default: {
        int64_t x = 0;
        st = dec ? sharedarea_dec64(id, pos, (int64_t)a, &x)
                 : sharedarea_inc64(id, pos, (int64_t)a, &x);
        v = (IV)x; break;
    }
    }
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Waiting and locking                                                      */
/* ------------------------------------------------------------------------ */

static int64_t
S_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* wait(id[, freq_ms[, timeout_s]]): returns when the area was updated after
 * the call began; croaks on timeout.  A signal interrupts the sleep, perl's
 * handler runs (and may die out of the wait), then the wait resumes with the
 * time that is left and the same starting counter, so no update is missed. */
static void
S_wait(pTHX_ const char *fname, SV *id_sv, SV *freq_sv, SV *timeout_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    NV timeout = 0;
    int64_t total_ms = 0;                      /* 0: forever */
    int64_t deadline = 0;
    uint64_t seen = 0;
    int32_t st;

    if (freq_sv)        /* accepted for compatibility; waking never polls */
        (void)S_arg_nonneg(aTHX_ fname, id, "frequency", freq_sv);
    if (timeout_sv)
        timeout = S_arg_nonneg(aTHX_ fname, id, "timeout", timeout_sv);
    if (timeout > 0) {
        NV ms = Perl_ceil(timeout * 1000.0);   /* 0.0001 s is 1 ms, not forever */
        /* beyond ~31 years is forever (and keeps the ns deadline in range) */
        total_ms = ms > 1e12 ? 0 : (int64_t)ms;
    }

    st = sharedarea_updates(id, &seen);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    if (total_ms)
        deadline = S_now_ns() + total_ms * 1000000;   /* CLOCK_MONOTONIC, as the core's */

    for (;;) {
        /* An absolute deadline: resuming after a handler adds no time. */
        st = sharedarea_wait_until(id, seen, deadline);
        if (st == SHAREDAREA_OK)
            return;
        if (st == SHAREDAREA_E_INTERRUPTED) {
            PERL_ASYNC_CHECK();     /* run %SIG handlers; a die leaves here */
            continue;
        }
        if (st == SHAREDAREA_E_TIMED_OUT)
            break;
        S_croak_core(aTHX_ fname, id, st);
    }
    S_die(aTHX_ fname, id, SHAREDAREA_E_TIMED_OUT, "timed out after %" NVgf " s", timeout);
}

enum { OP_UPDATE, OP_RLOCK, OP_WLOCK, OP_UNLOCK };

/* rlock/wlock(id[, timeout_s]): timeout absent or undef waits without limit,
 * 0 tries once, otherwise seconds (fractions honoured).  The core gives way
 * to signals (INTERRUPTED, nothing held): perl's %SIG handlers run at once
 * (a handler that dies leaves from here, holding nothing), then the lock is
 * tried again with the time that is left.  A timeout dies with the core's
 * detail, which names the holder and how long it has held the lock. */
/* The longest a blocked rlock (wlock) sleeps in the core before it looks
 * at perl's pending signals, in ms.  The core returns INTERRUPTED when a
 * signal wakes its sleep; one that lands between two of its sleeps (while it
 * spins or checks the holders) would otherwise wait for the lock or the
 * timeout.  A writer's slices are longer: a writer that ends a slice gives
 * up its claim on the lock for a moment, and readers that each hold longer
 * than a slice could then keep it out. */
#define RLOCK_SLICE_MS 100
#define WLOCK_SLICE_MS 1000

static int32_t
S_lock(pTHX_ const char *fname, int write, int32_t id, SV *timeout_sv)
{
    int64_t total_ms = -1;                     /* -1: no limit */
    int64_t start, deadline;
    int first;
    int32_t st;

    if (timeout_sv) {
        SvGETMAGIC(timeout_sv);
        if (SvOK(timeout_sv)) {
            NV t = 0, ms;
            arg_status ast = S_num_nonneg(aTHX_ timeout_sv, &t);
            if (ast != ARG_OK)
                S_croak_arg(aTHX_ fname, id, "timeout", timeout_sv, ast, "is too large");
            ms = Perl_ceil(t * 1000.0);
            /* beyond ~31 years is no limit (and keeps the ns deadline in range) */
            total_ms = ms > 1e12 ? -1 : (int64_t)ms;
        }
    }
    if (total_ms < 0) {
        /* No limit: slices relative to each call (no clock is read here, so
         * the common, uncontended call costs only the core's own work). */
        int64_t slice = write ? WLOCK_SLICE_MS : RLOCK_SLICE_MS;
        for (;;) {
            st = write ? sharedarea_wlock_timeout(id, slice)
                       : sharedarea_rlock_timeout(id, slice);
            if (st != SHAREDAREA_E_INTERRUPTED && st != SHAREDAREA_E_TIMED_OUT)
                return st;
            PERL_ASYNC_CHECK(); /* run %SIG handlers; a die leaves here */
        }
    }
    /* A limit: slices up to one absolute deadline, each passing the wait's
     * start, so the last slice's timeout text counts the whole wait. */
    start = S_now_ns();
    deadline = start + total_ms * 1000000;
    for (first = 1;; first = 0) {
        int64_t max_slice = (int64_t)(write ? WLOCK_SLICE_MS : RLOCK_SLICE_MS) * 1000000;
        int64_t slice_end = deadline;
        if (total_ms > 0) {
            int64_t now = first ? start : S_now_ns();   /* one clock read for the common case */
            if (deadline - now > max_slice)
                slice_end = now + max_slice;
        }
        st = write ? sharedarea_wlock_until(id, slice_end, start)
                   : sharedarea_rlock_until(id, slice_end, start);
        if (st == SHAREDAREA_E_INTERRUPTED
            || (st == SHAREDAREA_E_TIMED_OUT && slice_end < deadline)) {
            PERL_ASYNC_CHECK();
            continue;
        }
        return st;
    }
}

/* update/rlock/wlock/unlock(id).  A lock taken after clearing a dead
 * holder succeeds with a warning carrying the core's detail. */
static void
S_area_op(pTHX_ const char *fname, int op, SV *id_sv, SV *timeout_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    int32_t st;
    switch (op) {
    case OP_UPDATE: st = sharedarea_update(id); break;
    case OP_RLOCK:  st = S_lock(aTHX_ fname, 0, id, timeout_sv); break;
    case OP_WLOCK:  st = S_lock(aTHX_ fname, 1, id, timeout_sv); break;
    default:        st = sharedarea_unlock(id); break;
    }
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    if (st == SHAREDAREA_RECOVERED) {
        const char *detail = S_core_detail();
        if (detail)
            Perl_warn(aTHX_ "%s: %s", fname, detail);
        else
            Perl_warn(aTHX_ "%s: area %d: %s", fname, (int)id,
                      sharedarea_strerror(st));
    }
}

/* ------------------------------------------------------------------------ */
/* Areas: creation and information                                          */
/* ------------------------------------------------------------------------ */

static IV
S_init(pTHX_ const char *fname, SV *spec_sv)
{
    STRLEN len;
    const char *spec = S_arg_bytes(aTHX_ fname, -1, "spec", spec_sv, &len);
    int32_t id;
    if (memchr(spec, '\0', len))
        S_die(aTHX_ fname, -1, SHAREDAREA_E_INVALID_SPEC, "spec contains a NUL byte");
    /* a private NUL-terminated copy for C */
    id = sharedarea_init(SvPVX(sv_2mortal(newSVpvn(spec, len))));
    if (id < 0)
        S_croak_core(aTHX_ fname, -1, id);
    return id;
}

static SV *
S_info(pTHX_ const char *fname, SV *id_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    struct sharedarea_info info;
    HV *hv;
    int32_t st = sharedarea_info(id, &info);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    hv = newHV();
    sv_2mortal((SV *)hv);
    (void)hv_stores(hv, "size",        newSVuv((UV)info.size));
    (void)hv_stores(hv, "pages",       newSVuv((UV)info.pages));
    (void)hv_stores(hv, "page_size",   newSVuv((UV)info.page_size));
    (void)hv_stores(hv, "updates",     newSVuv((UV)info.updates));
    (void)hv_stores(hv, "used",        newSVuv((UV)info.used));
    (void)hv_stores(hv, "recoveries",  newSVuv((UV)info.recoveries));
    (void)hv_stores(hv, "honour_used", newSViv(info.honour_used ? 1 : 0));
    if (info.backing >= 0
        && info.backing < (int32_t)(sizeof S_backing_names / sizeof *S_backing_names))
        (void)hv_stores(hv, "backing", newSVpv(S_backing_names[info.backing], 0));
    else
        (void)hv_stores(hv, "backing", newSVpvf("unknown (%d)", (int)info.backing));
    return sv_2mortal(newRV_inc((SV *)hv));
}

static void
S_set_used(pTHX_ const char *fname, SV *id_sv, SV *used_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t used = S_arg_u64(aTHX_ fname, id, "used", used_sv);
    int32_t st = sharedarea_set_used(id, used);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
}

static void
S_honour_used(pTHX_ const char *fname, SV *id_sv, SV *on_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    int32_t st = sharedarea_honour_used(id, SvTRUE(on_sv) ? 1 : 0);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
}

/* held(id): 0, 1 (read lock) or 2 (write lock), as this thread holds it. */
static IV
S_held(pTHX_ const char *fname, SV *id_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    int32_t st = sharedarea_held(id);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    return st;
}

/* unlock_all(id): every level this thread holds released; how many. */
static IV
S_unlock_all(pTHX_ const char *fname, SV *id_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    int32_t st = sharedarea_unlock_all(id);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    return st;
}

static UV
S_updates(pTHX_ const char *fname, SV *id_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t n = 0;
    int32_t st = sharedarea_updates(id, &n);
    if (st < 0)
        S_croak_core(aTHX_ fname, id, st);
    return (UV)n;
}

/* ------------------------------------------------------------------------ */
/* WebSocket sends, for SharedArea::WebSocket                              */
/* ------------------------------------------------------------------------ */

static int32_t
S_arg_fd(pTHX_ const char *fname, SV *fd_sv)
{
    uint64_t fd = S_arg_u64(aTHX_ fname, -1, "file descriptor", fd_sv);
    if (fd > (uint64_t)INT32_MAX)
        S_die(aTHX_ fname, -1, SHAREDAREA_E_INVALID_ARGUMENT, "file descriptor %" UVuf " is out of range", (UV)fd);
    return (int32_t)fd;
}

static uint8_t
S_arg_opcode(pTHX_ const char *fname, SV *op_sv)
{
    uint64_t op = S_arg_u64(aTHX_ fname, -1, "opcode", op_sv);
    if (op > 15)
        S_die(aTHX_ fname, -1, SHAREDAREA_E_INVALID_ARGUMENT, "opcode %" UVuf " is not a WebSocket opcode (0..15)", (UV)op);
    return (uint8_t)op;
}

static void S_croak_ws(pTHX_ const char *fname, IV id, int64_t st)
    __attribute__noreturn__;

/* The status of the last failed WebSocket call, for SharedArea::WebSocket to
 * decide on (never on the message's wording). */
static void
S_set_ws_status(pTHX_ int64_t st)
{
    sv_setiv(get_sv("SharedArea::WebSocket::STATUS", GV_ADD), (IV)st);
}

static void
S_croak_ws(pTHX_ const char *fname, IV id, int64_t st)
{
    S_set_ws_status(aTHX_ st);
    if (st == SHAREDAREA_E_PEER_CLOSED)     /* the condition's one text: the core's */
        S_die(aTHX_ fname, -1, (int32_t)st, "%s", sharedarea_strerror((int32_t)st));
    S_croak_core(aTHX_ fname, id, st);
}

/* A send that waited for a stalled client returns INTERRUPTED when a signal
 * arrives, keeping the frame's unsent rest in the core (per fd).  Run the
 * %SIG handlers (a handler that dies leaves from here, the rest stays
 * pending), then finish the frame with sharedarea_ws_flush; again on each
 * signal.  Returns the final status or payload count. */
static int64_t
S_ws_complete(pTHX_ int32_t fd, int64_t st)
{
    while (st == SHAREDAREA_E_INTERRUPTED) {
        PERL_ASYNC_CHECK();
        st = sharedarea_ws_flush(fd);
    }
    return st;
}

/* Before a new frame: the rest of one that a dying handler interrupted goes
 * first (the core refuses a new frame while one is pending), so frames stay
 * whole and in order. Nothing pending costs one call that finds nothing. */
static void
S_ws_flush_pending(pTHX_ const char *fname, IV id, int32_t fd)
{
    int64_t st = S_ws_complete(aTHX_ fd, sharedarea_ws_flush(fd));
    if (st < 0)
        S_croak_ws(aTHX_ fname, id, st);
}

static UV
S_ws_send(pTHX_ SV *fname_sv, SV *fd_sv, SV *op_sv, SV *bytes_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    uint8_t op = S_arg_opcode(aTHX_ fname, op_sv);
    STRLEN len;
    const char *pv = S_arg_bytes(aTHX_ fname, -1, "message", bytes_sv, &len);
    int64_t sent;
    S_ws_flush_pending(aTHX_ fname, -1, fd);
    sent = S_ws_complete(aTHX_ fd, sharedarea_ws_send(fd, op, pv, (uint64_t)len));
    if (sent < 0)
        S_croak_ws(aTHX_ fname, -1, sent);
    return (UV)sent;
}

static UV
S_ws_send_from_area(pTHX_ SV *fname_sv, SV *fd_sv, SV *op_sv, SV *id_sv,
                    SV *pos_sv, SV *len_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    uint8_t op = S_arg_opcode(aTHX_ fname, op_sv);
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t len = len_sv ? S_arg_u64(aTHX_ fname, id, "length", len_sv) : 0;
    int64_t sent;
    S_ws_flush_pending(aTHX_ fname, id, fd);
    sent = S_ws_complete(aTHX_ fd, sharedarea_ws_send_from_area(fd, op, id, pos, len));
    if (sent < 0)
        S_croak_ws(aTHX_ fname, id, sent);
    return (UV)sent;
}

/* _ws_flush(fname, fd): finishes an interrupted frame (0 when none). */
static UV
S_ws_flush(pTHX_ SV *fname_sv, SV *fd_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    int64_t st = S_ws_complete(aTHX_ fd, sharedarea_ws_flush(fd));
    if (st < 0)
        S_croak_ws(aTHX_ fname, -1, st);
    return (UV)st;
}

/* Non-blocking sends for event loops: _ws_send_nb(fname, fd, opcode, bytes),
 * _ws_send_from_area_nb(fname, fd, opcode, id, pos[, len]), _ws_flush_nb(fname,
 * fd) return the bytes queued on fd after the call; _ws_queued(fname, fd)
 * adds the kernel's unsent bytes. None of them waits. */
static UV
S_ws_send_nb(pTHX_ SV *fname_sv, SV *fd_sv, SV *op_sv, SV *bytes_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    uint8_t op = S_arg_opcode(aTHX_ fname, op_sv);
    STRLEN len;
    const char *pv = S_arg_bytes(aTHX_ fname, -1, "message", bytes_sv, &len);
    int64_t st = sharedarea_ws_send_nb(fd, op, pv, (uint64_t)len);
    if (st < 0)
        S_croak_ws(aTHX_ fname, -1, st);
    return (UV)st;
}

static UV
S_ws_send_from_area_nb(pTHX_ SV *fname_sv, SV *fd_sv, SV *op_sv, SV *id_sv,
                       SV *pos_sv, SV *len_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    uint8_t op = S_arg_opcode(aTHX_ fname, op_sv);
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    uint64_t pos = S_arg_u64(aTHX_ fname, id, "position", pos_sv);
    uint64_t len = len_sv ? S_arg_u64(aTHX_ fname, id, "length", len_sv) : 0;
    int64_t st = sharedarea_ws_send_from_area_nb(fd, op, id, pos, len);
    if (st < 0)
        S_croak_ws(aTHX_ fname, id, st);
    return (UV)st;
}

static UV
S_ws_flush_nb(pTHX_ SV *fname_sv, SV *fd_sv, int queued)
{
    const char *fname = SvPV_nolen(fname_sv);
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    int64_t st = queued ? sharedarea_ws_queued(fd) : sharedarea_ws_flush_nb(fd);
    if (st < 0)
        S_croak_ws(aTHX_ fname, -1, st);
    return (UV)st;
}

/* _ws_set_stall_limit(fname, seconds) */
static void
S_ws_set_stall_limit(pTHX_ SV *fname_sv, SV *secs_sv)
{
    const char *fname = SvPV_nolen(fname_sv);
    NV secs = S_arg_nonneg(aTHX_ fname, -1, "stall limit", secs_sv);
    NV ms = Perl_ceil(secs * 1000.0);
    int32_t st = sharedarea_ws_set_stall_limit(ms > 1e15 ? (uint64_t)1e15 : (uint64_t)ms);
    if (st < 0)
        S_croak_core(aTHX_ fname, -1, st);
}

/* notify_fd(id): the descriptor readable after the area's updates. */
static IV
S_notify_fd(pTHX_ const char *fname, SV *id_sv)
{
    int32_t id = S_arg_id(aTHX_ fname, id_sv);
    int32_t fd = sharedarea_notify_fd(id);
    if (fd < 0)
        S_croak_core(aTHX_ fname, id, fd);
    return (IV)fd;
}

/* _ws_forget(fd): drops an interrupted frame's rest; returns the byte count. */
static UV
S_ws_forget(pTHX_ SV *fd_sv)
{
    const char *fname = "SharedArea::_ws_forget";
    int32_t fd = S_arg_fd(aTHX_ fname, fd_sv);
    int64_t st = sharedarea_ws_forget(fd);
    if (st < 0)
        S_croak_core(aTHX_ fname, -1, st);
    return (UV)st;
}

/* _ws_poll(fd, events, timeout_ms): poll(2) on one descriptor, for the
 * waits of SharedArea::WebSocket: the events that happened (POLLIN, POLLOUT,
 * POLLERR, POLLHUP, ...; 0 when TIMEOUT_MS ran out; a negative TIMEOUT_MS
 * waits without limit), or -1 with errno ($!) set when poll failed (EINTR: a
 * signal arrived, and perl runs its %SIG handler when this returns, as for
 * any system call).  Works for any descriptor number (select(2) stops at
 * 1024), and costs one system call: IO::Poll's object API rebuilds its
 * arrays on every call, a few microseconds each (bench/poll-call.pl). */
static IV
S_ws_poll(pTHX_ SV *fd_sv, SV *events_sv, SV *timeout_sv)
{
    struct pollfd p;
    IV t = SvIV(timeout_sv);
    p.fd = S_arg_fd(aTHX_ "SharedArea::_ws_poll", fd_sv);
    p.events = (short)SvIV(events_sv);
    p.revents = 0;
    if (poll(&p, 1, t < 0 ? -1 : t > INT_MAX ? INT_MAX : (int)t) < 0)
        return -1;
    return (IV)(unsigned short)p.revents;
}

/* ------------------------------------------------------------------------ */
/* Names and usages, indexed by the XS ALIAS ix                             */
/* ------------------------------------------------------------------------ */

/* The names, ALIAS entries and usages agree with uwsgi-functions.tsv, the one
 * table of the uWSGI functions: t/00-load.t checks each against it (and that
 * the older names answer as the names they stand for).
 *
 * The older names readbyte, writebyte, readlong, writelong and inclong are,
 * as in uWSGI 2.0, aliases of read8, write8, read64, write64 and inc64 with
 * the area id first: the last entries of the ALIAS groups below. */
static const int S_widths[] = { 8, 16, 32, 64, 8, 64 };

static const char *const S_read_int_names[] = {
    "sharedarea_read8", "sharedarea_read16", "sharedarea_read32", "sharedarea_read64",
    "sharedarea_readbyte", "sharedarea_readlong"
};
static const char *const S_read_int_usages[] = {
    "uwsgi::sharedarea_read8(id, pos)", "uwsgi::sharedarea_read16(id, pos)",
    "uwsgi::sharedarea_read32(id, pos)", "uwsgi::sharedarea_read64(id, pos)",
    "uwsgi::sharedarea_readbyte(id, pos)", "uwsgi::sharedarea_readlong(id, pos)"
};
static const char *const S_write_int_names[] = {
    "sharedarea_write8", "sharedarea_write16", "sharedarea_write32", "sharedarea_write64",
    "sharedarea_writebyte", "sharedarea_writelong"
};
static const char *const S_write_int_usages[] = {
    "uwsgi::sharedarea_write8(id, pos, value)", "uwsgi::sharedarea_write16(id, pos, value)",
    "uwsgi::sharedarea_write32(id, pos, value)", "uwsgi::sharedarea_write64(id, pos, value)",
    "uwsgi::sharedarea_writebyte(id, pos, value)", "uwsgi::sharedarea_writelong(id, pos, value)"
};
static const char *const S_add_int_names[] = {
    "sharedarea_inc8", "sharedarea_inc16", "sharedarea_inc32", "sharedarea_inc64",
    "sharedarea_dec8", "sharedarea_dec16", "sharedarea_dec32", "sharedarea_dec64",
    "sharedarea_inclong"
};
static const char *const S_add_int_usages[] = {
    "uwsgi::sharedarea_inc8(id, pos[, amount])", "uwsgi::sharedarea_inc16(id, pos[, amount])",
    "uwsgi::sharedarea_inc32(id, pos[, amount])", "uwsgi::sharedarea_inc64(id, pos[, amount])",
    "uwsgi::sharedarea_dec8(id, pos[, amount])", "uwsgi::sharedarea_dec16(id, pos[, amount])",
    "uwsgi::sharedarea_dec32(id, pos[, amount])", "uwsgi::sharedarea_dec64(id, pos[, amount])",
    "uwsgi::sharedarea_inclong(id, pos[, amount])"
};
static const int S_add_int_widths[] = { 8, 16, 32, 64, 8, 16, 32, 64, 64 };
static const int S_add_int_dec[]    = { 0, 0, 0, 0, 1, 1, 1, 1, 0 };
static const char *const S_area_op_names[] = {
    "sharedarea_update", "sharedarea_rlock", "sharedarea_wlock", "sharedarea_unlock"
};
static const char *const S_area_op_usages[] = {
    "uwsgi::sharedarea_update(id)", "uwsgi::sharedarea_rlock(id[, timeout])",
    "uwsgi::sharedarea_wlock(id[, timeout])", "uwsgi::sharedarea_unlock(id)"
};
/* how many arguments each takes at most: rlock and wlock have a timeout */
static const I32 S_area_op_max[] = { 1, 2, 2, 1 };

/* Direct calls of the small functions (readN, writeN, incN, decN, read,
 * write) without perl's generic entersub work: see perl/direct_calls.h, which
 * also says how to turn them off. */
#include "direct_calls.h"

#define OPT_ARG(n) (items > (n) ? ST(n) : NULL)

MODULE = SharedArea    PACKAGE = SharedArea

PROTOTYPES: DISABLE

BOOT:
    if (sharedarea_abi_version() != SHAREDAREA_ABI_VERSION)
        Perl_croak(aTHX_ "SharedArea: the linked core has ABI version %u, this module was built for %u",
                   (unsigned)sharedarea_abi_version(), (unsigned)SHAREDAREA_ABI_VERSION);
#ifdef SA_DIRECT_CALLS
    if (!PerlEnv_getenv("SHAREDAREA_NO_DIRECT_CALLS")) {
        int i;
        for (i = 0; S_direct_names[i]; i++)
            S_call_directly(aTHX_ S_direct_names[i]);
    }
#endif

void
sharedarea_read(...)
  CODE:
    S_check_items(aTHX_ items, 2, 3, "uwsgi::sharedarea_read(id, pos[, len])");
    {
        dXSTARG;
        ST(0) = S_read(aTHX_ "sharedarea_read", TARG, ST(0), ST(1), OPT_ARG(2));
        XSRETURN(1);
    }

void
sharedarea_readfast(...)
  CODE:
    S_check_items(aTHX_ items, 3, 4, "uwsgi::sharedarea_readfast(id, pos, buf[, len])");
    {
        dXSTARG;
        IV n = S_readfast(aTHX_ "sharedarea_readfast", ST(0), ST(1), ST(2), OPT_ARG(3));
        XSprePUSH;
        PUSHi(n);
        XSRETURN(1);
    }

void
sharedarea_write(...)
  CODE:
    S_check_items(aTHX_ items, 3, 3, "uwsgi::sharedarea_write(id, pos, data)");
    S_write(aTHX_ "sharedarea_write", ST(0), ST(1), ST(2));
    XSRETURN_YES;

void
sharedarea_read8(...)
  ALIAS:
    sharedarea_read16 = 1
    sharedarea_read32 = 2
    sharedarea_read64 = 3
    sharedarea_readbyte = 4
    sharedarea_readlong = 5
  CODE:
    S_check_items(aTHX_ items, 2, 2, S_read_int_usages[ix]);
    {
        dXSTARG;    /* the op's own target SV: no new mortal per call */
        const char *fname = S_read_int_names[ix];
        int32_t id = S_arg_id(aTHX_ fname, ST(0));
        IV v = S_read_int(aTHX_ fname, S_widths[ix], id, ST(1));
        XSprePUSH;
        PUSHi(v);
        XSRETURN(1);
    }

void
sharedarea_write8(...)
  ALIAS:
    sharedarea_write16 = 1
    sharedarea_write32 = 2
    sharedarea_write64 = 3
    sharedarea_writebyte = 4
    sharedarea_writelong = 5
  CODE:
    S_check_items(aTHX_ items, 3, 3, S_write_int_usages[ix]);
    {
        const char *fname = S_write_int_names[ix];
        int32_t id = S_arg_id(aTHX_ fname, ST(0));
        S_write_int(aTHX_ fname, S_widths[ix], id, ST(1), ST(2));
    }
    XSRETURN_YES;

void
sharedarea_inc8(...)
  ALIAS:
    sharedarea_inc16 = 1
    sharedarea_inc32 = 2
    sharedarea_inc64 = 3
    sharedarea_dec8  = 4
    sharedarea_dec16 = 5
    sharedarea_dec32 = 6
    sharedarea_dec64 = 7
    sharedarea_inclong = 8
  CODE:
    S_check_items(aTHX_ items, 2, 3, S_add_int_usages[ix]);
    {
        dXSTARG;
        const char *fname = S_add_int_names[ix];
        int32_t id = S_arg_id(aTHX_ fname, ST(0));
        IV v = S_add_int(aTHX_ fname, S_add_int_widths[ix], S_add_int_dec[ix], id, ST(1),
                         OPT_ARG(2));
        XSprePUSH;
        PUSHi(v);
        XSRETURN(1);
    }

void
sharedarea_wait(...)
  CODE:
    S_check_items(aTHX_ items, 1, 3, "uwsgi::sharedarea_wait(id[, freq[, timeout]])");
    S_wait(aTHX_ "sharedarea_wait", ST(0), OPT_ARG(1), OPT_ARG(2));
    XSRETURN_IV(1);

void
sharedarea_update(...)
  ALIAS:
    sharedarea_rlock  = 1
    sharedarea_wlock  = 2
    sharedarea_unlock = 3
  CODE:
    S_check_items(aTHX_ items, 1, S_area_op_max[ix], S_area_op_usages[ix]);
    S_area_op(aTHX_ S_area_op_names[ix], (int)ix, ST(0), OPT_ARG(1));
    XSRETURN_IV(1);

void
init(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::init(spec)");
    XSRETURN_IV(S_init(aTHX_ "SharedArea::init", ST(0)));

void
count(...)
  CODE:
    S_check_items(aTHX_ items, 0, 0, "SharedArea::count()");
    XSRETURN_IV(sharedarea_count());

void
info(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::info(id)");
    ST(0) = S_info(aTHX_ "SharedArea::info", ST(0));
    XSRETURN(1);

void
set_used(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::set_used(id, used)");
    S_set_used(aTHX_ "SharedArea::set_used", ST(0), ST(1));
    XSRETURN_YES;

void
honour_used(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::honour_used(id, on)");
    S_honour_used(aTHX_ "SharedArea::honour_used", ST(0), ST(1));
    XSRETURN_YES;

void
held(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::held(id)");
    XSRETURN_IV(S_held(aTHX_ "SharedArea::held", ST(0)));

void
unlock_all(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::unlock_all(id)");
    XSRETURN_IV(S_unlock_all(aTHX_ "SharedArea::unlock_all", ST(0)));

void
updates(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::updates(id)");
    XSRETURN_UV(S_updates(aTHX_ "SharedArea::updates", ST(0)));

void
abi_version(...)
  CODE:
    S_check_items(aTHX_ items, 0, 0, "SharedArea::abi_version()");
    XSRETURN_UV((UV)sharedarea_abi_version());

void
remove(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::remove(name)");
    {
        STRLEN len;
        const char *name = S_arg_bytes(aTHX_ "SharedArea::remove", -1, "name", ST(0), &len);
        int32_t st;
        if (memchr(name, '\0', len))
            S_die(aTHX_ "SharedArea::remove", -1, SHAREDAREA_E_INVALID_ARGUMENT, "name contains a NUL byte");
        st = sharedarea_unlink(SvPVX(sv_2mortal(newSVpvn(name, len))));
        if (st < 0)
            S_croak_core(aTHX_ "SharedArea::remove", -1, st);
    }
    XSRETURN_YES;

void
_ws_send(...)
  CODE:
    S_check_items(aTHX_ items, 4, 4, "SharedArea::_ws_send(fname, fd, opcode, bytes)");
    XSRETURN_UV(S_ws_send(aTHX_ ST(0), ST(1), ST(2), ST(3)));

void
_ws_send_from_area(...)
  CODE:
    S_check_items(aTHX_ items, 5, 6,
                  "SharedArea::_ws_send_from_area(fname, fd, opcode, id, pos[, len])");
    XSRETURN_UV(S_ws_send_from_area(aTHX_ ST(0), ST(1), ST(2), ST(3), ST(4), OPT_ARG(5)));

void
_ws_flush(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::_ws_flush(fname, fd)");
    XSRETURN_UV(S_ws_flush(aTHX_ ST(0), ST(1)));

void
_ws_forget(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::_ws_forget(fd)");
    XSRETURN_UV(S_ws_forget(aTHX_ ST(0)));

void
_ws_poll(...)
  CODE:
    S_check_items(aTHX_ items, 3, 3, "SharedArea::_ws_poll(fd, events, timeout_ms)");
    XSRETURN_IV(S_ws_poll(aTHX_ ST(0), ST(1), ST(2)));

void
_ws_send_nb(...)
  CODE:
    S_check_items(aTHX_ items, 4, 4, "SharedArea::_ws_send_nb(fname, fd, opcode, bytes)");
    XSRETURN_UV(S_ws_send_nb(aTHX_ ST(0), ST(1), ST(2), ST(3)));

void
_ws_send_from_area_nb(...)
  CODE:
    S_check_items(aTHX_ items, 5, 6,
                  "SharedArea::_ws_send_from_area_nb(fname, fd, opcode, id, pos[, len])");
    XSRETURN_UV(S_ws_send_from_area_nb(aTHX_ ST(0), ST(1), ST(2), ST(3), ST(4), OPT_ARG(5)));

void
_ws_flush_nb(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::_ws_flush_nb(fname, fd)");
    XSRETURN_UV(S_ws_flush_nb(aTHX_ ST(0), ST(1), 0));

void
_ws_queued(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::_ws_queued(fname, fd)");
    XSRETURN_UV(S_ws_flush_nb(aTHX_ ST(0), ST(1), 1));

void
_ws_set_stall_limit(...)
  CODE:
    S_check_items(aTHX_ items, 2, 2, "SharedArea::_ws_set_stall_limit(fname, seconds)");
    S_ws_set_stall_limit(aTHX_ ST(0), ST(1));
    XSRETURN_EMPTY;

void
_ws_statuses(...)
  PPCODE:
    /* the statuses SharedArea::WebSocket decides on, by name */
    S_check_items(aTHX_ items, 0, 0, "SharedArea::_ws_statuses()");
    EXTEND(SP, 8);
    mPUSHs(newSVpvs("PEER_CLOSED"));       mPUSHi(SHAREDAREA_E_PEER_CLOSED);
    mPUSHs(newSVpvs("CONNECTION_FAILED")); mPUSHi(SHAREDAREA_E_CONNECTION_FAILED);
    mPUSHs(newSVpvs("TIMED_OUT"));         mPUSHi(SHAREDAREA_E_TIMED_OUT);
    mPUSHs(newSVpvs("INTERRUPTED"));       mPUSHi(SHAREDAREA_E_INTERRUPTED);

SV *
_strerror(status_sv)
    SV *status_sv
  CODE:
    /* the core's one text for a status (src/status.rs), for conditions the
     * Perl modules detect themselves (a close frame read by SharedArea::WebSocket);
     * undef for anything that is not an integer status number */
    SvGETMAGIC(status_sv);
    if (SvOK(status_sv) && looks_like_number(status_sv)) {
        NV nv = SvNV_nomg(status_sv);
        if (nv >= (NV)INT32_MIN && nv <= (NV)INT32_MAX && nv == (NV)(int32_t)nv)
            RETVAL = newSVpv(sharedarea_strerror((int32_t)nv), 0);
        else
            RETVAL = newSV(0);
    }
    else
        RETVAL = newSV(0);
  OUTPUT:
    RETVAL

void
_statuses(...)
  PPCODE:
    /* every status by name (SharedArea::Error's names and constants): the
     * header's SHAREDAREA_* constants without their prefix */
    S_check_items(aTHX_ items, 0, 0, "SharedArea::_statuses()");
    EXTEND(SP, 32);
#define SA_STATUS(name) mPUSHs(newSVpvs(#name)); mPUSHi(SHAREDAREA_##name)
    SA_STATUS(OK);                 SA_STATUS(RECOVERED);
    SA_STATUS(E_NO_SUCH_AREA);     SA_STATUS(E_OUT_OF_RANGE);
    SA_STATUS(E_INVALID_SPEC);     SA_STATUS(E_IO);
    SA_STATUS(E_TIMED_OUT);        SA_STATUS(E_LOCK_MISUSE);
    SA_STATUS(E_INTERRUPTED);      SA_STATUS(E_NULL_POINTER);
    SA_STATUS(E_INVALID_ARGUMENT); SA_STATUS(E_PANIC);
    SA_STATUS(E_LIMIT);            SA_STATUS(E_PEER_CLOSED);
    SA_STATUS(E_NOT_AN_AREA);      SA_STATUS(E_CONNECTION_FAILED);
#undef SA_STATUS

void
_calls_directly(...)
  CODE:
    /* for t/00-load.t: 1 when a call naming CODE (a code reference) is a
     * direct call (perl/direct_calls.h), 0 when not, undef when the direct
     * calls are not compiled in */
    S_check_items(aTHX_ items, 1, 1, "SharedArea::_calls_directly(code)");
    if (!SvROK(ST(0)) || SvTYPE(SvRV(ST(0))) != SVt_PVCV)
        S_die(aTHX_ "SharedArea::_calls_directly", -1, SHAREDAREA_E_INVALID_ARGUMENT,
              "code is not a code reference");
#ifdef SA_DIRECT_CALLS
    XSRETURN_IV(S_calls_directly(aTHX_ (CV *)SvRV(ST(0))));
#else
    XSRETURN_UNDEF;
#endif

void
notify_fd(...)
  CODE:
    S_check_items(aTHX_ items, 1, 1, "SharedArea::notify_fd(id)");
    XSRETURN_IV(S_notify_fd(aTHX_ "notify_fd", ST(0)));
