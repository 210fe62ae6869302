/* fuzz_checkpoint.c — libFuzzer target for the checkpoint reader: a
 * snapshot file or a manifest of arbitrary bytes must be rejected, or read
 * with every checksum verified; never a crash. Inputs starting with the
 * snapshot magic are read as snapshot files, others as manifests. (The
 * window operator's restore of garbage sections is fuzzed in
 * tests/unit/test_window.c.) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/store.h"

static char dir[64];

static int count_section(void *ud, int kind, uint32_t id, int32_t kg, const void *data,
                         size_t len)
{
    (void)kind, (void)id, (void)kg, (void)data, (void)len;
    (*(int *)ud)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/sluice-fuzz-ck-%d", (int)getpid());
        sl__mkdirs(dir);
    }
    char path[128];
    bool snap = size >= 6 && memcmp(data, "SLSNAP", 6) == 0;
    snprintf(path, sizeof path, "%s/%s", dir, snap ? "t.snap" : "MANIFEST");
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    char err[256];
    if (!snap) {
        sl__manifest m;
        if (sl__manifest_read(dir, &m, false, err, sizeof err) == 0) sl__manifest_free(&m);
    } else {
        int n = 0;
        sl__snapfile_read(path, count_section, &n, err, sizeof err);
    }
    unlink(path);
    return 0;
}
