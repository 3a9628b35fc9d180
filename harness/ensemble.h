/* Subclass ensembles (SPEC 4): from the cosine map of every text-bank member to one score
 * per class.
 *
 * A text bank holds, for each class c in order, its members: member 0 is the superclass
 * embedding e_c, then the subclass embeddings s_c,1 .. s_c,n_c in list order. A class
 * without subclasses (background, say) has n_c = 0 and one member. All rows are
 * L2-normalised. The bank also keeps each class's Gram matrix (member dot products), so the
 * embedding rules never rebuild a combined embedding: for a combination sum_i a_i m_i the
 * cosine with a normalised token t is sum_i a_i (t . m_i) / sqrt(a^T G a).
 *
 * The scores are computed from cos[N, M], the cosines of N normalised tokens with all M
 * members (hx_score_cos in harness/score.h: one GEMM). One such map serves every point of a
 * sweep over rules, k and include_super.
 *
 * An ensemble point (rule, k, include_super) selects for class c its first min(k, n_c)
 * subclasses, plus the superclass itself when include_super is set; k = 0 or n_c = 0 selects
 * the superclass alone. The selection is always a contiguous run of the class's members.
 *
 * Ownership: hx_text_bank_create allocates the bank, hx_text_bank_free frees it; the
 * scoring functions write into caller buffers and allocate only a small per-call workspace
 * (O(M + C), never per row). */
#ifndef HX_ENSEMBLE_H
#define HX_ENSEMBLE_H

#include <stddef.h>

struct hx_text_bank {
    int n_classes;   /* C */
    int dim;         /* E */
    int n_members;   /* M = sum_c (1 + n_sub[c]) */
    int *offset;     /* [C]: row of class c's superclass; its subclasses follow it */
    int *n_sub;      /* [C]: number of subclasses n_c (>= 0) */
    float *emb;      /* [M, E] row-major, rows L2-normalised */
    size_t *gram_at; /* [C]: start of class c's Gram matrix in gram */
    double *gram;    /* per class, [(1+n_c), (1+n_c)] row-major: member dot products,
                        members in bank order (superclass first) */
};

/* Build a bank from emb[M, E] (classes in order, each its superclass row then its n_sub[c]
 * subclass rows; M = sum_c (1 + n_sub[c])). The rows are copied and L2-normalised; an
 * all-zero row is an error (HX_EINVAL naming the class and member). */
int hx_text_bank_create(struct hx_text_bank **out, const float *emb, const int *n_sub, int C,
                        int E);
void hx_text_bank_free(struct hx_text_bank *b);

enum hx_ens_rule {
    HX_ENS_SUPER,         /* cos of e_c (the baseline; ignores k and include_super) */
    HX_ENS_EMBED_MEAN,    /* cosine with normalise(sum_i m_i) = sum_i cos_i / ||sum_i m_i|| */
    HX_ENS_EMBED_SOFTMAX, /* cosine with normalise(sum_i w_i m_i), w = softmax_i(g_i),
                             g_i = global . m_i, no temperature (SimSeg's released code) */
    HX_ENS_MAX,           /* max_i cos_i */
    HX_ENS_MEAN,          /* mean_i cos_i */
    HX_ENS_MEAN_PROB,     /* log(p_c) / tau, p_c = sum over the class's members of the
                             softmax of tau*cos over all selected members of all classes */
    HX_ENS_LOGSUMEXP,     /* tau^-1 log sum_i exp(tau cos_i) */
    HX_ENS_VOTE,          /* votes_c + tie-break: a decision, not a score (see below) */
    HX_ENS_CHILS,         /* log(p(class) max_i p(sub_i)) / tau (CHiLS) */
    HX_ENS_NRULES
};

/* Parse a rule name: exactly "super", "embed-mean", "embed-softmax", "max", "mean",
 * "mean-prob", "logsumexp", "vote" or "chils". Anything else (or NULL) is HX_EINVAL with a
 * message listing the valid names. */
int hx_ens_rule_parse(const char *name, enum hx_ens_rule *out);
/* The name of a rule, or NULL for a value outside the enum. */
const char *hx_ens_rule_name(enum hx_ens_rule r);
/* 1 when the rule needs the image's global embedding (embed-softmax). */
int hx_ens_rule_needs_global(enum hx_ens_rule r);

struct hx_ens_point {
    enum hx_ens_rule rule;
    int k;             /* subclasses per class, >= 0; INT_MAX selects them all */
    int include_super; /* nonzero: the superclass is one more member */
};

/* Class scores out[n, C] from the member cosine map cos[n, M] of n tokens.
 *   tau:        the logit scale (e.g. 100, or the protocol's logit_scale); used, and then
 *               required > 0 and finite, by mean-prob, logsumexp and chils.
 *   global_dot: [M], g_m = (normalised global image embedding) . member m (hx_score_cos with
 *               one row); required by embed-softmax, ignored (may be NULL) otherwise.
 * Every output is a score such that softmax(tau * score) over classes is the rule's class
 * distribution where it has one:
 *   - super, embed-*, max, mean, logsumexp: the scores are cosine-like values;
 *   - mean-prob: log(p_c)/tau, so softmax(tau * score) = p_c exactly (the p_c sum to 1);
 *   - chils: log(p(class) * max_i p(sub_i))/tau with p(class) the softmax over classes of
 *     tau * cos(e_c) and p(sub) the softmax of tau*cos over all selected members of all
 *     classes; exp(tau * score) is the CHiLS product, which does not sum to 1 over classes;
 *   - vote: each selected member i of class c votes for the argmax over
 *     {c: cos_i} U {c' != c: cos(e_c')} (exact ties to the lower class index); the output is
 *     votes_c + 0.25 (1 + tanh(mean_i cos_i)), the second term in (0, 0.5) breaking equal
 *     vote counts by the higher mean member cosine. Only its argmax is meaningful: it is a
 *     decision, not a calibrated score (do not threshold its softmax). Mean cosines closer
 *     than the float resolution at the vote count (about votes * 2.4e-7) count as tied.
 * Computations are per row with double accumulators; rows are independent, so a caller may
 * stream a large map in chunks of rows. Returns 0, or HX_EINVAL (bad point, missing
 * global_dot, bad tau, a combined embedding of zero norm) or HX_ENOMEM. */
int hx_ens_scores(const struct hx_text_bank *b, const struct hx_ens_point *p, const float *cos,
                  int n, float tau, const float *global_dot, float *out);

/* The combined class embeddings of the embedding rules, out[C, E] (L2-normalised), for
 * callers that need them explicitly (e.g. SimSeg's per-class maps): super -> e_c,
 * embed-mean -> normalise(sum_i m_i), embed-softmax -> normalise(sum_i w_i m_i) with w as
 * above. Other rules have no single class embedding: HX_EINVAL. */
int hx_ens_class_embeddings(const struct hx_text_bank *b, const struct hx_ens_point *p,
                            const float *global_dot, float *out);

#endif
