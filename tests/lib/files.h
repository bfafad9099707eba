/*
 * files - the small files of the unit tests: write one with a mode, read
 * one back whole, look for a text in a log.
 */
#ifndef BTPRELAY_TEST_FILES_H
#define BTPRELAY_TEST_FILES_H

#include <sys/types.h>

#define FILE_TEXT_MAX (1u << 20)	/* file_text() reads at most this much */

/* write_file - path holds exactly content, with mode; exits 99 when it cannot */
void write_file(const char *path, const char *content, mode_t mode);
/*
 * file_text - the file's first FILE_TEXT_MAX - 1 bytes, NUL-terminated,
 * "" when unreadable; a static buffer, overwritten by the next call
 */
const char *file_text(const char *path);
/* log_has - whether the file (a log) holds text */
int log_has(const char *path, const char *text);

#endif
