/* files - write, read back and search the tests' small files (see files.h) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "files.h"

/* write_file - replace path's content, then set its mode */
void write_file(const char *path, const char *content, mode_t mode)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL || fputs(content, fp) == EOF || fclose(fp) != 0 || chmod(path, mode) < 0) {
		perror(path);
		exit(99);
	}
}

/* file_text - the whole (small) file */
const char *file_text(const char *path)
{
	static char buf[FILE_TEXT_MAX];
	FILE *fp = fopen(path, "r");
	size_t n = 0;

	if (fp != NULL) {
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
	}
	buf[n] = '\0';
	return buf;
}

/* log_has - text somewhere in the file */
int log_has(const char *path, const char *text)
{
	return strstr(file_text(path), text) != NULL;
}
