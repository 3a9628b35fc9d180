/* Scoring: dense tokens against a text bank with one GEMM, and the normalisation helpers
 * that produce both sides (SPEC 2).
 *
 * GEMM convention (the project's, see harness/nn.h): the text bank is stored like a weight
 * matrix, one embedding per row, bank[M, E] row-major, and
 *     cos[N, M] = tok[N, E] @ bank[M, E]^T
 *               = cblas_sgemm(RowMajor, NoTrans, Trans, N, M, E, 1, tok, E, bank, E, 0, cos, M).
 * With L2-normalised rows on both sides the products are cosines. Every ensemble rule
 * (harness/ensemble.h) reads this member-cosine map, so one GEMM serves a whole sweep over
 * subclass counts and rules.
 *
 * Ownership: nothing here allocates; callers own every buffer. */
#ifndef HX_SCORE_H
#define HX_SCORE_H

/* cos[n, m] = tok[n, e] @ bank[m, e]^T (one cblas_sgemm). cos must not overlap the inputs.
 * n may be 0 (nothing is written). */
void hx_score_cos(const float *tok, int n, const float *bank, int m, int e, float *cos);

/* Divide each row of x[rows, cols] by max(||row||_2, 1e-12), in place (the semantics of
 * torch.nn.functional.normalize: an all-zero row stays zero). The norm is summed in double. */
void hx_l2_normalize_rows(float *x, int rows, int cols);
/* The same, written to out (which may be x). */
void hx_l2_normalize_rows_to(const float *x, int rows, int cols, float *out);

/* Template-averaged query embeddings (SPEC 2): emb[n * t, e] holds the t template embeddings
 * of name 0, then those of name 1, ...; out[n, e] receives, per name, the mean of the
 * L2-normalised template embeddings, L2-normalised again (both normalisations as in
 * hx_l2_normalize_rows). Norms in double, the sum in float. out must not overlap emb. */
void hx_template_mean(const float *emb, int n, int t, int e, float *out);

#endif
