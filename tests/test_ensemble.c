/* Scoring (harness/score.c) and subclass ensembles (harness/ensemble.c).
 *
 * Every rule is checked twice: on a tiny bank whose numbers are worked out below from the
 * definitions, and against a naive twin on random banks, which builds the combined class
 * embeddings explicitly (embedding rules) or loops over the members in double precision
 * straight from SPEC 4 (map rules). */
#include "harness/ensemble.h"
#include "harness/error.h"
#include "harness/score.h"
#include "tests/test_util.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng = 4242;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) / 16777216.0 * 2.0 - 1.0);
}
static float *randv(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

static enum hx_ens_rule rule_of(const char *name)
{
    enum hx_ens_rule r;
    ck_assert_msg(hx_ens_rule_parse(name, &r) == 0, "%s: %s", name, hx_errmsg());
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Scoring helpers */

START_TEST(score_gemm_matches_dot_loop)
{
    int N = 37, M = 23, E = 19;
    float *tok = randv((size_t)N * E), *bank = randv((size_t)M * E);
    float *cos = malloc(sizeof(float) * N * M), *ref = malloc(sizeof(float) * N * M);
    hx_score_cos(tok, N, bank, M, E, cos);
    for (int i = 0; i < N; i++)
        for (int m = 0; m < M; m++) {
            double s = 0;
            for (int j = 0; j < E; j++)
                s += (double)tok[i * E + j] * bank[m * E + j];
            ref[i * M + m] = (float)s;
        }
    hx_assert_close("cos", cos, ref, (size_t)N * M, 1e-5, 1e-6);
    /* no rows: nothing written */
    float sentinel = 7;
    hx_score_cos(tok, 0, bank, M, E, &sentinel);
    ck_assert(sentinel == 7);
    free(tok), free(bank), free(cos), free(ref);
}
END_TEST

START_TEST(l2_normalize_rows_by_hand)
{
    float x[3 * 3] = {3, 4, 0, 0, 0, 0, -2, 0, 0};
    const float want[3 * 3] = {0.6f, 0.8f, 0, 0, 0, 0, -1, 0, 0}; /* zero row stays zero */
    hx_l2_normalize_rows(x, 3, 3);
    hx_assert_close("normalised", x, want, 9, 0, 1e-7);
}
END_TEST

START_TEST(template_mean_by_hand_and_naive)
{
    /* name 0: templates (3,4,0) and (0,0,2) -> (.6,.8,0) + (0,0,1) = (.6,.8,1), norm sqrt(2)
     * -> (.42426407, .56568542, .70710678). name 1: one template (0,-5,0) -> (0,-1,0). */
    const float emb[4 * 3] = {3, 4, 0, 0, 0, 2, 0, -5, 0, 0, -5, 0};
    float out[2 * 3];
    const float want[2 * 3] = {0.42426407f, 0.56568542f, 0.70710678f, 0, -1, 0};
    hx_template_mean(emb, 2, 2, 3, out);
    hx_assert_close("template mean (hand)", out, want, 6, 0, 1e-7);

    /* random: 3 names x 80 templates, against the definition in double */
    int n = 3, t = 80, E = 32;
    float *r = randv((size_t)n * t * E), *o = malloc(sizeof(float) * n * E);
    float *ref = malloc(sizeof(float) * n * E);
    hx_template_mean(r, n, t, E, o);
    for (int i = 0; i < n; i++) {
        double acc[32] = {0}, nn = 0;
        for (int a = 0; a < t; a++) {
            const float *x = r + ((size_t)i * t + a) * E;
            double s = 0;
            for (int j = 0; j < E; j++)
                s += (double)x[j] * x[j];
            for (int j = 0; j < E; j++)
                acc[j] += x[j] / sqrt(s) / t;
        }
        for (int j = 0; j < E; j++)
            nn += acc[j] * acc[j];
        for (int j = 0; j < E; j++)
            ref[i * E + j] = (float)(acc[j] / sqrt(nn));
    }
    hx_assert_close("template mean (random)", o, ref, (size_t)n * E, 1e-5, 1e-6);
    free(r), free(o), free(ref);
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * The hand-worked bank. E = 4, axes x y z w, three classes, members in bank order:
 *   class 0 (background): e0 = (1,0,0,0), no subclasses
 *   class 1: e1 = (0,1,0,0), s11 = (0,.6,.8,0), s12 = (0,.6,-.8,0)
 *   class 2: e2 = (0,0,0,1), s21 = (.6,0,0,.8), s22 = (0,0,.6,.8)
 * Gram: class 1 e1.s1i = .6, s11.s12 = .36-.64 = -.28; class 2 e2.s2i = .8, s21.s22 = .64.
 * Tokens t0 = (0,0,1,0), t1 = (.6,.8,0,0), t2 = (0,0,.6,.8), t3 = (.5,.5,.5,.5); the cosine
 * rows over [e0 e1 s11 s12 e2 s21 s22]:
 *   t0: 0  0  .8   -.8  0  0   .6
 *   t1: .6 .8 .48  .48  0  .36 0
 *   t2: 0  0  .48  -.48 .8 .64 1
 *   t3: .5 .5 .7   -.1  .5 .7  .7
 * tau = 10; embed-softmax uses the global embedding (0,0,1,0), so g = the t0 row.
 *
 * Worked entries, point (k=2, no superclass):
 *   embed-mean, class 2: s21+s22 = (.6,0,.6,1.6), norm sqrt(2+2*.64) = sqrt(3.28);
 *     t2: (.64+1)/sqrt(3.28) = .90553851. Class 1: s11+s12 = (0,1.2,0,0): t1: .96/1.2 = .8.
 *   embed-softmax, class 1: w = softmax(.8,-.8) = (.83201839, .16798161); sum w_i s1i =
 *     (0,.6,.8(w1-w2),0), norm^2 = w^T G w = .36 + .64 (w1-w2)^2; t0: .53122943/.80137... =
 *     .66289597.
 *   logsumexp, class 1, t1: .48 + log(2)/10 = .54931472.
 *   mean-prob, t1: members e0 | s11 s12 | s21 s22 with logits 6 | 4.8 4.8 | 3.6 0,
 *     Z = e^6 + 2e^4.8 + e^3.6 + 1; p0 = e^6/Z = .58977, out0 = log(p0)/10 = -.05280279.
 *   chils, t1: p(class) = softmax(6, 8, 0); p(class 1) = e^8/(e^6+e^8+1) = .88054;
 *     max p(sub) of class 1 = e^4.8/Z; out1 = log(.88054 * e^4.8/Z)/10 = -.18552513.
 *   vote, t1: superclass cosines (.6,.8,0). e0 (.6) loses to e1 (.8): class 1; s11 and s12
 *     (.48) lose to e0 (.6): class 0; s21 (.36) and s22 (0) lose to e1: class 1. Votes
 *     (2,3,0), mean member cosines (.6,.48,.18): out = votes + .25(1+tanh(mean)) =
 *     (2.38426239, 3.36156090, .29452022).
 *   vote, t3: superclass cosines all .5 (exact ties go to the lower class index): e0 ties
 *     with e1 -> class 0; s11 (.7) -> class 1; s12 (-.1) -> class 0; s21, s22 (.7) ->
 *     class 2. Votes (2,1,2): the tie between classes 0 and 2 goes to the higher mean
 *     cosine, class 2 (.7 > .5): out (2.36552929, 1.32282815, 2.40109194).
 * The remaining entries follow the same definitions (evaluated in double precision). */

static const float hand_bank[7 * 4] = {
    1,  0,  0,   0,  /* e0 */
    0,  1,  0,   0,  /* e1 */
    0,  .6, .8,  0,  /* s11 */
    0,  .6, -.8, 0,  /* s12 */
    0,  0,  0,   1,  /* e2 */
    .6, 0,  0,   .8, /* s21 */
    0,  0,  .6,  .8, /* s22 */
};
static const int hand_nsub[3] = {0, 2, 2};
static const float hand_tok[4 * 4] = {0, 0, 1, 0, .6, .8, 0, 0, 0, 0, .6, .8, .5, .5, .5, .5};
static const float hand_cos[4 * 7] = {
    0,  0,  .8,  -.8,  0,  0,   .6, /* t0 */
    .6, .8, .48, .48,  0,  .36, 0,  /* t1 */
    0,  0,  .48, -.48, .8, .64, 1,  /* t2 */
    .5, .5, .7,  -.1,  .5, .7,  .7, /* t3 */
};

static const struct {
    const char *rule;
    int k, include_super;
    float want[4 * 3]; /* [token, class] */
} hand_cases[] = {
    {"super", 2, 0, {0, 0, 0, .6, .8, 0, 0, 0, .8, .5, .5, .5}},
    {"embed-mean", 2, 0,
     {0, 0, 0.33129458, .6, .8, 0.19877675, 0, 0, 0.90553851, .5, .5, 0.77302068}},
    {"embed-softmax", 2, 0,
     {0, 0.66289597, 0.42387501, .6, 0.59896921, 0.13957652, 0, 0.39773758, 0.95459440, .5,
      0.70580374, 0.76591964}},
    {"max", 2, 0, {0, .8, .6, .6, .48, .36, 0, .48, 1, .5, .7, .7}},
    {"mean", 2, 0, {0, 0, .3, .6, .48, .18, 0, 0, .82, .5, .3, .7}},
    {"mean-prob", 2, 0,
     {-0.81275189, -0.01275188, -0.21250432, -0.05280279, -0.10348807, -0.29010708,
      -1.00323569, -0.52322892, -0.00053998, -0.31428431, -0.11425077, -0.04496959}},
    {"logsumexp", 2, 0,
     {0, 0.80000001, 0.60024757, .6, 0.54931472, 0.36269571, 0, 0.48000677, 1.00269571, .5,
      0.70003354, 0.76931472}},
    {"vote", 2, 0,
     {3.25, 1.25, 1.32282815, 2.38426239, 3.36156090, 0.29452022, 0.25, 0.25, 5.41876747,
      2.36552929, 1.32282815, 2.40109194}},
    {"chils", 2, 0,
     {-0.92261312, -0.12261312, -0.32261312, -0.26552513, -0.18552513, -1.10552513,
      -1.80330276, -1.32330276, -0.00330276, -0.42414554, -0.22414554, -0.22414554}},
    /* k = 1 with the superclass: members {e0}, {e1, s11}, {e2, s21} */
    {"super", 1, 1, {0, 0, 0, .6, .8, 0, 0, 0, .8, .5, .5, .5}},
    {"embed-mean", 1, 1,
     {0, 0.44721360, 0, .6, 0.71554175, 0.18973666, 0, 0.26832816, 0.75894664, .5, 0.67082039,
      0.63245553}},
    {"embed-softmax", 1, 1,
     {0, 0.60628834, 0, .6, 0.63619592, 0.18973666, 0, 0.36377301, 0.75894664, .5, 0.70076662,
      0.63245553}},
    {"max", 1, 1, {0, .8, 0, .6, .8, .36, 0, .48, .8, .5, .7, .7}},
    {"mean", 1, 1, {0, .4, 0, .6, .64, .18, 0, .24, .72, .5, .6, .6}},
    {"mean-prob", 1, 1,
     {-0.80013410, -0.00010055, -0.73081938, -0.21728689, -0.01329156, -0.45459118,
      -0.82177930, -0.34095969, -0.00338922, -0.28779680, -0.07510400, -0.07510400}},
    {"logsumexp", 1, 1,
     {0, 0.80003354, 0.06931472, .6, 0.80399533, 0.36269571, 0, 0.48081961, 0.81839007, .5,
      0.71269280, 0.71269280}},
    /* t0: all superclass cosines 0: e0, e1, e2, s21 tie and vote class 0; s11 -> class 1 */
    {"vote", 1, 1,
     {4.25, 1.34498724, 0.25, 1.38426239, 4.39122489, 0.29452022, 0.25, 0.30887394,
      5.40422733, 3.36552929, 1.38426239, 1.38426239}},
    {"chils", 1, 1,
     {-0.90999532, -0.10999532, -0.90999532, -0.43000924, -0.03000924, -1.27000924,
      -1.62184637, -1.14184637, -0.02184637, -0.39765803, -0.19765803, -0.19765803}},
    /* k = 0 is the superclass alone, whatever the rule */
    {"mean", 0, 1, {0, 0, 0, .6, .8, 0, 0, 0, .8, .5, .5, .5}},
    {"embed-mean", 0, 0, {0, 0, 0, .6, .8, 0, 0, 0, .8, .5, .5, .5}},
};

START_TEST(hand_bank_and_cosines)
{
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, hand_bank, hand_nsub, 3, 4), 0);
    ck_assert_int_eq(b->n_members, 7);
    ck_assert_int_eq(b->offset[0], 0);
    ck_assert_int_eq(b->offset[1], 1);
    ck_assert_int_eq(b->offset[2], 4);
    /* Gram of class 1: [[1 .6 .6] [.6 1 -.28] [.6 -.28 1]] */
    const double *G = b->gram + b->gram_at[1];
    const double g1[9] = {1, .6, .6, .6, 1, -.28, .6, -.28, 1};
    for (int i = 0; i < 9; i++)
        ck_assert_msg(fabs(G[i] - g1[i]) < 1e-6, "gram[1][%d] = %g, want %g", i, G[i], g1[i]);
    ck_assert(fabs(b->gram[b->gram_at[2] + 5] - .64) < 1e-6); /* s21 . s22 */
    ck_assert(fabs(b->gram[b->gram_at[0]] - 1) < 1e-6);
    float cos[4 * 7];
    hx_score_cos(hand_tok, 4, b->emb, 7, 4, cos);
    hx_assert_close("hand cosines", cos, hand_cos, 28, 0, 1e-6);
    hx_text_bank_free(b);
}
END_TEST

START_TEST(each_rule_by_hand)
{
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, hand_bank, hand_nsub, 3, 4), 0);
    float cos[4 * 7], gdot[7];
    const float global[4] = {0, 0, 1, 0};
    hx_score_cos(hand_tok, 4, b->emb, 7, 4, cos);
    hx_score_cos(global, 1, b->emb, 7, 4, gdot);
    for (size_t t = 0; t < sizeof hand_cases / sizeof hand_cases[0]; t++) {
        struct hx_ens_point p = {rule_of(hand_cases[t].rule), hand_cases[t].k,
                                 hand_cases[t].include_super};
        float out[4 * 3];
        char what[64];
        snprintf(what, sizeof what, "%s k=%d super=%d", hand_cases[t].rule, p.k,
                 p.include_super);
        ck_assert_msg(hx_ens_scores(b, &p, cos, 4, 10, gdot, out) == 0, "%s: %s", what,
                      hx_errmsg());
        hx_assert_close(what, out, hand_cases[t].want, 12, 0, 2e-6);
    }
    hx_text_bank_free(b);
}
END_TEST

/* The two votes of a tie decided by the mean cosine and the member ties: checked as
 * decisions too, since only the argmax of a vote output has a meaning. */
START_TEST(vote_decisions_by_hand)
{
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, hand_bank, hand_nsub, 3, 4), 0);
    float out[4 * 3];
    struct hx_ens_point p = {HX_ENS_VOTE, 2, 0};
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 10, NULL, out), 0);
    const int want[4] = {0, 1, 2, 2}; /* t3: classes 0 and 2 tie at 2 votes; 2 has mean .7 */
    for (int r = 0; r < 4; r++) {
        int best = 0;
        for (int c = 1; c < 3; c++)
            if (out[r * 3 + c] > out[r * 3 + best])
                best = c;
        ck_assert_msg(best == want[r], "token %d: decision %d, want %d", r, best, want[r]);
        for (int c = 0; c < 3; c++) {
            float frac = out[r * 3 + c] - floorf(out[r * 3 + c]);
            ck_assert(frac > 0 && frac < 0.5f);
        }
    }
    hx_text_bank_free(b);
}
END_TEST

/* Exact ties inside one member's argmax go to the lower class index, also when the best
 * other class is not the overall best. Bank: class 0 = {e0, s01}, classes 1, 2 = {e_c};
 * the map row is given directly: e0 .5, s01 .2, e1 .5, e2 .5; point k=1, no superclass.
 *   s01 (.2) loses to the others' best, the tie between e1 and e2 at .5 -> class 1;
 *   e1 (.5) ties with e0 and e2 -> class 0; e2 (.5) ties with e0 and e1 -> class 0.
 * Votes (2, 1, 0); mean member cosines (.2, .5, .5). */
START_TEST(vote_ties_go_to_the_lower_class)
{
    const float emb[4 * 2] = {1, 0, 0, 1, 1, 1, 1, -1};
    const int ns[3] = {1, 0, 0};
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, emb, ns, 3, 2), 0);
    const float cos[4] = {.5f, .2f, .5f, .5f};
    float out[3];
    struct hx_ens_point p = {HX_ENS_VOTE, 1, 0};
    ck_assert_int_eq(hx_ens_scores(b, &p, cos, 1, 100, NULL, out), 0);
    const float want[3] = {2 + 0.25f * (1 + tanhf(.2f)), 1 + 0.25f * (1 + tanhf(.5f)),
                           0 + 0.25f * (1 + tanhf(.5f))};
    hx_assert_close("vote with ties", out, want, 3, 0, 1e-6);
    hx_text_bank_free(b);
}
END_TEST

/* A huge tau: exp(tau * cos) overflows even in double, the log-domain rules must not. */
START_TEST(large_tau_is_stable)
{
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, hand_bank, hand_nsub, 3, 4), 0);
    float out[4 * 3];
    struct hx_ens_point p = {HX_ENS_MEAN_PROB, 2, 0};
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 1e4f, NULL, out), 0);
    /* t1: best member e0 (.6) takes all the mass: out -> (log sum of the class's member
     * exps - tau .6) / tau; class 1 has two members at .48 */
    const float want[3] = {0, .48f - .6f + logf(2) / 1e4f, .36f - .6f};
    hx_assert_close("mean-prob tau=1e4 (t1)", out + 3, want, 3, 0, 1e-6);
    p.rule = HX_ENS_LOGSUMEXP;
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 1e4f, NULL, out), 0);
    const float want_lse[3] = {.6f, .48f + logf(2) / 1e4f, .36f};
    hx_assert_close("logsumexp tau=1e4 (t1)", out + 3, want_lse, 3, 0, 1e-6);
    p.rule = HX_ENS_CHILS;
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 1e4f, NULL, out), 0);
    /* t1: log p(class) = (e_c - .8), log max p(sub) = (max member - .6), over tau -> 0 */
    const float want_ch[3] = {(.6f - .8f) + 0, 0 + (.48f - .6f), (0 - .8f) + (.36f - .6f)};
    hx_assert_close("chils tau=1e4 (t1)", out + 3, want_ch, 3, 0, 1e-6);
    hx_text_bank_free(b);
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * Naive twin on random banks */

enum { RC = 7, RE = 24, RN = 50 };
static const int rand_nsub[RC] = {0, 1, 3, 5, 2, 0, 4};

struct twin {
    float *raw_bank, *raw_tok, *raw_global; /* the inputs, unnormalised */
    double *bank, *tok, *global;            /* normalised in double */
    int off[RC], M;
    struct hx_text_bank *b;
    float *cos, *gdot; /* the library's map [RN, M] and global cosines [M] */
};

static void normalise_d(const float *x, int n, double *y)
{
    double s = 0;
    for (int j = 0; j < n; j++)
        s += (double)x[j] * x[j];
    for (int j = 0; j < n; j++)
        y[j] = x[j] / sqrt(s);
}

static void twin_make(struct twin *w)
{
    memset(w, 0, sizeof *w);
    w->M = 0;
    for (int c = 0; c < RC; c++)
        w->off[c] = w->M, w->M += 1 + rand_nsub[c];
    w->raw_bank = randv((size_t)w->M * RE);
    w->raw_tok = randv((size_t)RN * RE);
    w->raw_global = randv(RE);
    for (int i = 0; i < w->M * RE; i++)
        w->raw_bank[i] *= 3; /* not normalised: the bank does it */
    w->bank = malloc(sizeof(double) * w->M * RE);
    w->tok = malloc(sizeof(double) * RN * RE);
    w->global = malloc(sizeof(double) * RE);
    for (int i = 0; i < w->M; i++)
        normalise_d(w->raw_bank + i * RE, RE, w->bank + i * RE);
    for (int i = 0; i < RN; i++)
        normalise_d(w->raw_tok + i * RE, RE, w->tok + i * RE);
    normalise_d(w->raw_global, RE, w->global);
    ck_assert_int_eq(hx_text_bank_create(&w->b, w->raw_bank, rand_nsub, RC, RE), 0);
    /* the library's path: normalise tokens and global, one GEMM each */
    float *t = malloc(sizeof(float) * RN * RE), g[RE];
    memcpy(t, w->raw_tok, sizeof(float) * RN * RE);
    memcpy(g, w->raw_global, sizeof g);
    hx_l2_normalize_rows(t, RN, RE);
    hx_l2_normalize_rows(g, 1, RE);
    w->cos = malloc(sizeof(float) * RN * w->M);
    w->gdot = malloc(sizeof(float) * w->M);
    hx_score_cos(t, RN, w->b->emb, w->M, RE, w->cos);
    hx_score_cos(g, 1, w->b->emb, w->M, RE, w->gdot);
    free(t);
}

static void twin_free(struct twin *w)
{
    free(w->raw_bank), free(w->raw_tok), free(w->raw_global);
    free(w->bank), free(w->tok), free(w->global);
    free(w->cos), free(w->gdot);
    hx_text_bank_free(w->b);
}

/* Members of class c under a point, written from the definition: list of bank rows. */
static int twin_members(const struct twin *w, enum hx_ens_rule rule, int k, int inc, int c,
                        int *m)
{
    int n = 0, ns = rand_nsub[c];
    if (rule == HX_ENS_SUPER || k == 0 || ns == 0) {
        m[n++] = w->off[c];
        return n;
    }
    if (inc)
        m[n++] = w->off[c];
    for (int i = 0; i < ns && i < k; i++)
        m[n++] = w->off[c] + 1 + i;
    return n;
}

static double dotd(const double *a, const double *b, int n)
{
    double s = 0;
    for (int j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* Embedding rules: the combined class embedding built explicitly, out[RC, RE]. */
static void twin_class_embeddings(const struct twin *w, enum hx_ens_rule rule, int k, int inc,
                                  double *emb)
{
    for (int c = 0; c < RC; c++) {
        int m[16], n = twin_members(w, rule, k, inc, c, m);
        double wt[16], s = 0, *e = emb + c * RE;
        for (int i = 0; i < n; i++) {
            wt[i] = rule == HX_ENS_EMBED_SOFTMAX ? exp(dotd(w->global, w->bank + m[i] * RE, RE))
                                                 : 1;
            s += wt[i];
        }
        for (int j = 0; j < RE; j++) {
            e[j] = 0;
            for (int i = 0; i < n; i++)
                e[j] += wt[i] / s * w->bank[m[i] * RE + j];
        }
        double nn = sqrt(dotd(e, e, RE));
        for (int j = 0; j < RE; j++)
            e[j] /= nn;
    }
}

/* Map rules, from the member cosines x[M] of one token, in double, no tricks. */
static void twin_map_row(const struct twin *w, enum hx_ens_rule rule, int k, int inc,
                         double tau, const float *x, float *out)
{
    int m[RC][16], n[RC];
    for (int c = 0; c < RC; c++)
        n[c] = twin_members(w, rule, k, inc, c, m[c]);
    double Z = 0, Zc = 0; /* over all selected members; over the superclasses */
    for (int c = 0; c < RC; c++) {
        for (int i = 0; i < n[c]; i++)
            Z += exp(tau * x[m[c][i]]);
        Zc += exp(tau * x[w->off[c]]);
    }
    int votes[RC] = {0};
    if (rule == HX_ENS_VOTE)
        for (int c = 0; c < RC; c++)
            for (int i = 0; i < n[c]; i++) {
                double v[RC];
                for (int d = 0; d < RC; d++)
                    v[d] = d == c ? x[m[c][i]] : x[w->off[d]];
                int best = 0;
                for (int d = 1; d < RC; d++)
                    if (v[d] > v[best])
                        best = d;
                votes[best]++;
            }
    for (int c = 0; c < RC; c++) {
        double mx = -INFINITY, sum = 0, sexp = 0, pmax = 0;
        for (int i = 0; i < n[c]; i++) {
            double v = x[m[c][i]];
            mx = v > mx ? v : mx;
            sum += v;
            sexp += exp(tau * v);
            double p = exp(tau * v) / Z;
            pmax = p > pmax ? p : pmax;
        }
        double r = 0;
        switch (rule) {
        case HX_ENS_MAX: r = mx; break;
        case HX_ENS_MEAN: r = sum / n[c]; break;
        case HX_ENS_LOGSUMEXP: r = log(sexp) / tau; break;
        case HX_ENS_MEAN_PROB: r = log(sexp / Z) / tau; break;
        case HX_ENS_CHILS: r = log(exp(tau * x[w->off[c]]) / Zc * pmax) / tau; break;
        case HX_ENS_VOTE: r = votes[c] + 0.25 * (1 + tanh(sum / n[c])); break;
        default: ck_abort_msg("not a map rule");
        }
        out[c] = (float)r;
    }
}

static const int twin_ks[] = {0, 1, 2, 3, 4, INT_MAX};

START_TEST(embedding_rules_match_explicit_embeddings)
{
    struct twin w;
    twin_make(&w);
    const enum hx_ens_rule rules[] = {HX_ENS_SUPER, HX_ENS_EMBED_MEAN, HX_ENS_EMBED_SOFTMAX};
    double emb[RC * RE];
    float out[RN * RC], ref[RN * RC], cemb[RC * RE], cref[RC * RE];
    for (int ri = 0; ri < 3; ri++)
        for (size_t ki = 0; ki < sizeof twin_ks / sizeof *twin_ks; ki++)
            for (int inc = 0; inc < 2; inc++) {
                struct hx_ens_point p = {rules[ri], twin_ks[ki], inc};
                char what[80];
                snprintf(what, sizeof what, "%s k=%d super=%d", hx_ens_rule_name(p.rule), p.k,
                         inc);
                twin_class_embeddings(&w, p.rule, p.k, inc, emb);
                for (int r = 0; r < RN; r++)
                    for (int c = 0; c < RC; c++)
                        ref[r * RC + c] = (float)dotd(w.tok + r * RE, emb + c * RE, RE);
                ck_assert_msg(hx_ens_scores(w.b, &p, w.cos, RN, 100, w.gdot, out) == 0, "%s: %s",
                              what, hx_errmsg());
                hx_assert_close(what, out, ref, RN * RC, 1e-5, 2e-6);
                /* the explicit embeddings the library hands out */
                ck_assert_int_eq(hx_ens_class_embeddings(w.b, &p, w.gdot, cemb), 0);
                for (int i = 0; i < RC * RE; i++)
                    cref[i] = (float)emb[i];
                hx_assert_close(what, cemb, cref, RC * RE, 1e-5, 2e-6);
            }
    twin_free(&w);
}
END_TEST

START_TEST(map_rules_match_naive_loops)
{
    struct twin w;
    twin_make(&w);
    const enum hx_ens_rule rules[] = {HX_ENS_MAX,       HX_ENS_MEAN, HX_ENS_LOGSUMEXP,
                                      HX_ENS_MEAN_PROB, HX_ENS_VOTE, HX_ENS_CHILS};
    const float taus[] = {100, 10};
    float out[RN * RC], ref[RN * RC];
    for (int ri = 0; ri < 6; ri++)
        for (int ti = 0; ti < 2; ti++)
            for (size_t ki = 0; ki < sizeof twin_ks / sizeof *twin_ks; ki++)
                for (int inc = 0; inc < 2; inc++) {
                    struct hx_ens_point p = {rules[ri], twin_ks[ki], inc};
                    char what[80];
                    snprintf(what, sizeof what, "%s k=%d super=%d tau=%g",
                             hx_ens_rule_name(p.rule), p.k, inc, (double)taus[ti]);
                    for (int r = 0; r < RN; r++)
                        twin_map_row(&w, p.rule, p.k, inc, taus[ti], w.cos + r * w.M,
                                     ref + r * RC);
                    ck_assert_msg(hx_ens_scores(w.b, &p, w.cos, RN, taus[ti], NULL, out) == 0,
                                  "%s: %s", what, hx_errmsg());
                    hx_assert_close(what, out, ref, RN * RC, 1e-5, 2e-6);
                    if (p.rule == HX_ENS_VOTE) /* the vote counts, exactly */
                        for (int i = 0; i < RN * RC; i++)
                            ck_assert_msg(floorf(out[i]) == floorf(ref[i]), "%s: votes at %d",
                                          what, i);
                }
    twin_free(&w);
}
END_TEST

/* mean-prob: exp(tau * out) are the class probabilities themselves (they sum to 1, and a
 * softmax over classes gives them back); chils: exp(tau * out) is the CHiLS product
 * p(class) max p(sub), whose sum over classes is at most 1. */
START_TEST(probability_outputs_resoftmax)
{
    struct twin w;
    twin_make(&w);
    float out[RN * RC], ref[RN * RC];
    for (size_t ki = 0; ki < sizeof twin_ks / sizeof *twin_ks; ki++)
        for (int inc = 0; inc < 2; inc++) {
            struct hx_ens_point p = {HX_ENS_MEAN_PROB, twin_ks[ki], inc};
            float tau = 100;
            ck_assert_int_eq(hx_ens_scores(w.b, &p, w.cos, RN, tau, NULL, out), 0);
            for (int r = 0; r < RN; r++) {
                /* the probabilities straight from the definition */
                double Z = 0, pc[RC] = {0}, sum = 0, smx = 0;
                for (int c = 0; c < RC; c++) {
                    int m[16], n = twin_members(&w, p.rule, p.k, inc, c, m);
                    for (int i = 0; i < n; i++) {
                        double e = exp(tau * w.cos[r * w.M + m[i]]);
                        pc[c] += e;
                        Z += e;
                    }
                }
                for (int c = 0; c < RC; c++) {
                    sum += exp((double)tau * out[r * RC + c]);
                    smx += exp((double)tau * out[r * RC + c] - tau * out[r * RC]);
                }
                ck_assert_msg(fabs(sum - 1) < 1e-4, "mean-prob: probabilities sum to %.7f", sum);
                float got[RC], want[RC];
                for (int c = 0; c < RC; c++) {
                    got[c] = (float)(exp((double)tau * out[r * RC + c] - tau * out[r * RC]) / smx);
                    want[c] = (float)(pc[c] / Z);
                }
                hx_assert_close("softmax(tau * mean-prob)", got, want, RC, 1e-4, 1e-7);
            }
            p.rule = HX_ENS_CHILS;
            ck_assert_int_eq(hx_ens_scores(w.b, &p, w.cos, RN, tau, NULL, out), 0);
            for (int r = 0; r < RN; r++) {
                twin_map_row(&w, HX_ENS_CHILS, p.k, inc, tau, w.cos + r * w.M, ref + r * RC);
                double sum = 0;
                float got[RC], want[RC];
                for (int c = 0; c < RC; c++) {
                    got[c] = (float)exp((double)tau * out[r * RC + c]);
                    want[c] = (float)exp((double)tau * ref[r * RC + c]);
                    sum += got[c];
                }
                ck_assert_msg(sum <= 1 + 1e-4 && sum > 0, "chils: products sum to %.7f", sum);
                hx_assert_close("exp(tau * chils)", got, want, RC, 1e-3, 1e-9);
            }
        }
    twin_free(&w);
}
END_TEST

/* Rows are independent: a map scored in two chunks gives the same numbers. */
START_TEST(streaming_in_chunks_is_identical)
{
    struct twin w;
    twin_make(&w);
    float full[RN * RC], part[RN * RC];
    for (int r = 0; r < HX_ENS_NRULES; r++) {
        struct hx_ens_point p = {(enum hx_ens_rule)r, 3, 1};
        ck_assert_int_eq(hx_ens_scores(w.b, &p, w.cos, RN, 50, w.gdot, full), 0);
        ck_assert_int_eq(hx_ens_scores(w.b, &p, w.cos, 17, 50, w.gdot, part), 0);
        ck_assert_int_eq(
            hx_ens_scores(w.b, &p, w.cos + 17 * w.M, RN - 17, 50, w.gdot, part + 17 * RC), 0);
        ck_assert_msg(memcmp(full, part, sizeof full) == 0, "%s differs when streamed",
                      hx_ens_rule_name(p.rule));
    }
    twin_free(&w);
}
END_TEST

/* ------------------------------------------------------------------------------------------
 * Names and errors */

START_TEST(rule_names_parse_exactly)
{
    const char *good[] = {"super", "embed-mean", "embed-softmax", "max", "mean",
                          "mean-prob", "logsumexp", "vote", "chils"};
    for (int i = 0; i < 9; i++) {
        enum hx_ens_rule r = HX_ENS_NRULES;
        ck_assert_int_eq(hx_ens_rule_parse(good[i], &r), 0);
        ck_assert_str_eq(hx_ens_rule_name(r), good[i]);
    }
    ck_assert_int_eq(rule_of("embed-softmax"), HX_ENS_EMBED_SOFTMAX);
    ck_assert_int_eq(rule_of("mean"), HX_ENS_MEAN);
    ck_assert_int_eq(rule_of("mean-prob"), HX_ENS_MEAN_PROB);
    const char *bad[] = {"", "Max", "embed_mean", "super ", "chils2", "mean-probs", "lse",
                         "embed"};
    for (int i = 0; i < 8; i++) {
        enum hx_ens_rule r = HX_ENS_NRULES;
        hx_err_clear();
        ck_assert_int_eq(hx_ens_rule_parse(bad[i], &r), HX_EINVAL);
        ck_assert_int_eq(r, HX_ENS_NRULES); /* untouched */
        ck_assert_msg(strstr(hx_errmsg(), "embed-softmax") && strstr(hx_errmsg(), "chils"),
                      "message lists the valid names: %s", hx_errmsg());
        char quoted[32];
        snprintf(quoted, sizeof quoted, "\"%s\"", bad[i]);
        ck_assert_msg(strstr(hx_errmsg(), quoted), "message names the bad rule: %s",
                      hx_errmsg());
    }
    enum hx_ens_rule r;
    ck_assert_int_eq(hx_ens_rule_parse(NULL, &r), HX_EINVAL);
    ck_assert_ptr_null(hx_ens_rule_name(HX_ENS_NRULES));
}
END_TEST

START_TEST(bad_points_and_banks_rejected)
{
    struct hx_text_bank *b;
    ck_assert_int_eq(hx_text_bank_create(&b, hand_bank, hand_nsub, 3, 4), 0);
    float out[4 * 3];
    struct hx_ens_point p = {HX_ENS_MEAN, -1, 0};
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 10, NULL, out), HX_EINVAL);
    p.k = 2;
    const enum hx_ens_rule need_tau[] = {HX_ENS_MEAN_PROB, HX_ENS_LOGSUMEXP, HX_ENS_CHILS};
    for (int i = 0; i < 3; i++) {
        p.rule = need_tau[i];
        ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 0, NULL, out), HX_EINVAL);
        ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, NAN, NULL, out), HX_EINVAL);
    }
    p.rule = HX_ENS_MAX; /* tau unused: accepted */
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 0, NULL, out), 0);
    p.rule = HX_ENS_EMBED_SOFTMAX;
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 10, NULL, out), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "global") != NULL);
    p.rule = HX_ENS_MAX;
    float emb[3 * 4];
    ck_assert_int_eq(hx_ens_class_embeddings(b, &p, NULL, emb), HX_EINVAL);
    p.rule = (enum hx_ens_rule)99;
    ck_assert_int_eq(hx_ens_scores(b, &p, hand_cos, 4, 10, NULL, out), HX_EINVAL);
    hx_text_bank_free(b);

    /* members that cancel out: s11 = -e1 with include_super, embed-mean */
    float cancel[3 * 2] = {1, 0, 0, 1, 0, -1};
    int ns[2] = {0, 1};
    ck_assert_int_eq(hx_text_bank_create(&b, cancel, ns, 2, 2), 0);
    struct hx_ens_point q = {HX_ENS_EMBED_MEAN, 1, 1};
    float o2[2], pad[3] = {0, 0, 0};
    ck_assert_int_eq(hx_ens_scores(b, &q, pad, 1, 10, NULL, o2), HX_EINVAL);
    ck_assert_msg(strstr(hx_errmsg(), "class 1") != NULL, "%s", hx_errmsg());
    float e2[2 * 2];
    ck_assert_int_eq(hx_ens_class_embeddings(b, &q, NULL, e2), HX_EINVAL);
    q.include_super = 0; /* s11 alone is fine */
    ck_assert_int_eq(hx_ens_scores(b, &q, pad, 1, 10, NULL, o2), 0);
    hx_text_bank_free(b);

    /* banks: a zero row, a negative subclass count, no classes */
    float zero[3 * 2] = {1, 0, 0, 0, 0, 1};
    ck_assert_int_eq(hx_text_bank_create(&b, zero, ns, 2, 2), HX_EINVAL);
    ck_assert_ptr_null(b);
    ck_assert(strstr(hx_errmsg(), "class 1") != NULL);
    int neg[2] = {0, -1};
    ck_assert_int_eq(hx_text_bank_create(&b, zero, neg, 2, 2), HX_EINVAL);
    ck_assert_int_eq(hx_text_bank_create(&b, zero, ns, 0, 2), HX_EINVAL);
}
END_TEST

Suite *suite_ensemble(void)
{
    Suite *s = suite_create("ensemble");
    TCase *tc = tcase_create("score");
    tcase_add_test(tc, score_gemm_matches_dot_loop);
    tcase_add_test(tc, l2_normalize_rows_by_hand);
    tcase_add_test(tc, template_mean_by_hand_and_naive);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_add_test(tc, hand_bank_and_cosines);
    tcase_add_test(tc, each_rule_by_hand);
    tcase_add_test(tc, vote_decisions_by_hand);
    tcase_add_test(tc, vote_ties_go_to_the_lower_class);
    tcase_add_test(tc, large_tau_is_stable);
    tcase_add_test(tc, embedding_rules_match_explicit_embeddings);
    tcase_add_test(tc, map_rules_match_naive_loops);
    tcase_add_test(tc, probability_outputs_resoftmax);
    tcase_add_test(tc, streaming_in_chunks_is_identical);
    tcase_add_test(tc, rule_names_parse_exactly);
    tcase_add_test(tc, bad_points_and_banks_rejected);
    suite_add_tcase(s, tc);
    return s;
}
