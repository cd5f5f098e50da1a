/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Corpus replay without libFuzzer (git2 fuzzers/standalone_driver.c): a
 * main() that feeds every file named on the command line, or found directly
 * in a directory named there, to LLVMFuzzerTestOneInput once. Files run in
 * name order so a replay is deterministic; each input is copied into a
 * buffer of exactly its size so ASan sees any over-read. With no input at
 * all the empty input runs once, so a target without seeds still runs.
 *
 * Used by the normal and sanitizer builds (ATR_FUZZ=OFF): each target is the
 * ctest fuzz.replay.<name>, which replays its committed corpus, including
 * every crash ever saved there as a regression seed.
 */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned long inputs_run;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "standalone_driver: cannot open %s\n", path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        fprintf(stderr, "standalone_driver: cannot stat %s\n", path);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size == 0 ? 1 : size);
    if (data == NULL || fread(data, 1, size, f) != size) {
        free(data);
        fclose(f);
        fprintf(stderr, "standalone_driver: cannot read %s\n", path);
        return -1;
    }
    fclose(f);
    /* a crash here names the input: the line before it is the last one */
    if (getenv("ATR_FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "running %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    inputs_run++;
    return 0;
}

static int skip_name(const char *name)
{
    /* dot files (editor or VCS leftovers) are not inputs */
    return name[0] == '.';
}

static int run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "standalone_driver: cannot list %s\n", dir);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && !skip_name(names[i]->d_name)) {
            size_t len = strlen(dir) + strlen(names[i]->d_name) + 2;
            char *path = malloc(len);
            if (path == NULL) {
                rc = -1;
            } else {
                snprintf(path, len, "%s/%s", dir, names[i]->d_name);
                struct stat st;
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                    rc = run_file(path);
                free(path);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "standalone_driver: no such file or directory: %s\n", argv[i]);
            return 1;
        }
        if ((S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i])) != 0)
            return 1;
    }
    if (inputs_run == 0) {
        static const uint8_t empty[1];
        LLVMFuzzerTestOneInput(empty, 0);
        inputs_run++;
    }
    printf("%s: %lu inputs ran\n", argc > 0 ? argv[0] : "fuzz", inputs_run);
    return 0;
}
