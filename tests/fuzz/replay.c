/*
 * replay: runs LLVMFuzzerTestOneInput() on saved inputs without libFuzzer, so
 * that every build tests the corpus. Arguments are corpus directories (every
 * regular file in them, not recursively) or single files. Fails if it ran
 * nothing, so a moved corpus cannot pass silently.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file; 0, or -1 if it cannot be read. */
static int run_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		perror(path);
		return -1;
	}
	size_t cap = 4096, len = 0, n;
	uint8_t *buf = malloc(cap);
	while (buf && (n = fread(buf + len, 1, cap - len, fp)) > 0) {
		len += n;
		if (len == cap) {
			uint8_t *q = realloc(buf, cap * 2);
			if (!q) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = q;
			cap *= 2;
		}
	}
	int bad = !buf || ferror(fp);
	fclose(fp);
	if (bad) {
		fprintf(stderr, "%s: cannot read\n", path);
		free(buf);
		return -1;
	}
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

/* Runs every regular file in dir; the number run, or -1 on an error. */
static long run_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	if (!dp) {
		perror(dir);
		return -1;
	}
	long ran = 0;
	struct dirent *de;
	char path[4096];
	while ((de = readdir(dp)) != NULL) {
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (run_file(path) < 0) {
			ran = -1;
			break;
		}
		ran++;
	}
	closedir(dp);
	return ran;
}

int main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS-DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		long ran;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0;
		if (ran < 0)
			return 1;
		total += ran;
	}
	printf("ran %ld inputs\n", total);
	if (total == 0) {
		fprintf(stderr, "no inputs found\n");
		return 1;
	}
	return 0;
}
