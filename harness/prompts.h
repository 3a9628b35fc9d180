/* Prompts: template lists, filling a template with a name, and matching subclass lists to
 * a dataset's classes. Shared by `run` and `segment`.
 * Ownership: hx_templates_read allocates (free with hx_templates_free); hx_template_fill
 * returns a malloc'ed string. */
#ifndef HX_PROMPTS_H
#define HX_PROMPTS_H

#include "datasets/datasets.h"
#include "harness/subclasses.h"

/* The templates of `spec`: a preset name (datasets/templates/<spec>.txt, relative to the
 * current directory) or a file path; one template per line, each with "{}" for the name;
 * empty lines skipped. Errors name the file. */
int hx_templates_read(const char *spec, char ***out, int *n);
void hx_templates_free(char **t, int n);

/* tmpl with its "{}" replaced by name. */
char *hx_template_fill(const char *tmpl, const char *name);

/* The subclass list of class c: the entry keyed by one of its names, exactly, else ignoring
 * case and surrounding spaces; -1 when none. */
int hx_subclass_match(const struct hx_subclasses *s, const struct hx_classnames *cn, int c);

#endif
