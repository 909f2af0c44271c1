/* khctl_admin.h: the operators' side of khctl (tools/khctl_admin.c): the
 * admin API client and the bootstrap of the first operator. */
#ifndef KH_CTL_ADMIN_H
#define KH_CTL_ADMIN_H

#include <stdio.h>

/* khctl admin [OPTIONS] COMMAND ...: argv[0] is "admin". */
int khctl_admin_main(int argc, char **argv);
/* khctl operator-add --db CONNINFO NAME ROLE ...: argv[0] is "operator-add". */
int khctl_operator_add_main(int argc, char **argv);
/* The usage text of both. */
void khctl_admin_usage(FILE *f);

#endif
