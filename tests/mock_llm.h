/* A loopback mock of the OpenAI chat-completions API for the tests: it listens on 127.0.0.1
 * on a free port, answers POST /v1/chat/completions from a background thread (one thread per
 * connection, keep-alive supported), counts requests and checks the Authorization header.
 *
 * An answer is chosen by rules: the first rule whose `match` occurs in the request body
 * applies, and its script, a comma-separated list of actions, gives the action of the 1st,
 * 2nd, ... matching request (the last action repeats). Without a matching rule: "ok".
 * Actions:
 *   ok          200, content "C s<seed>a, C common, C s<seed>b, C" where C is the class
 *               (the text after the prompt's last '>' up to ':') and <seed> the request's
 *               seed ("none" when absent)
 *   prose       the same list between two sentences of prose
 *   json        the same items as a JSON array in a code fence
 *   nolist      200, content "I am not able to answer that question."
 *   malformed   200 with a body that is not JSON
 *   empty       200 with "choices": []
 *   slow:MS     wait MS milliseconds, then ok
 *   429 / 429:S 429 "Rate limit reached", with "Retry-After: S" when given
 *   500         500 "internal error"
 *   400         400 "unknown parameter"
 *   401         401 "Incorrect API key provided: <the Authorization header received>"
 *   drop        close the connection without an answer
 * With an expected key set, a request without "Authorization: Bearer KEY" gets the 401.
 *
 * Ownership: mock_llm_start allocates, mock_llm_stop joins every thread and frees. */
#ifndef HX_TEST_MOCK_LLM_H
#define HX_TEST_MOCK_LLM_H

struct mock_llm;

/* 0, or -1 with a message on stderr. */
int mock_llm_start(struct mock_llm **out);
void mock_llm_stop(struct mock_llm *m);
/* "http://127.0.0.1:PORT/v1" */
const char *mock_llm_url(const struct mock_llm *m);
/* Add a rule (strings copied); call before requests arrive. */
void mock_llm_rule(struct mock_llm *m, const char *match, const char *script);
/* Require "Authorization: Bearer key" (NULL: accept anything). */
void mock_llm_expect_key(struct mock_llm *m, const char *key);
/* Requests received so far; those whose body contains `match` ("" counts all). */
int mock_llm_requests(struct mock_llm *m);
int mock_llm_count(struct mock_llm *m, const char *match);
/* Requests that carried "Authorization: Bearer <expected key>"; requests with no
 * Authorization header at all. */
int mock_llm_auth_ok(struct mock_llm *m);
int mock_llm_no_auth(struct mock_llm *m);

#endif
