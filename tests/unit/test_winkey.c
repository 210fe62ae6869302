/* test_winkey.c — the window's column-at-a-time key encoder
 * (sl__wkey_encode_rows) against the row-at-a-time one (sl__wkey_encode,
 * whose format snapshots and changelogs hold): random batches of every key
 * type with NULLs, strings with NUL bytes and every length up to 40, -0.0
 * and NaN, over a random subset of rows; each key must be byte for byte the
 * same, and nothing may be written outside the room the header promises. */
#include "testutil.h"

#include <math.h>

#include "ops/agg.h"

enum { C_S1, C_I, C_F, C_B, C_S2, NCOL };

static uint64_t next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void encode_rows_equals_encode(void **state)
{
    (void)state;
    uint64_t x = tu_seed("encode_rows_equals_encode");
    sl_schema *in = sl_schema_new();
    sl_schema_add(in, "s1", SL_STRING);
    sl_schema_add(in, "i", SL_INT64);
    sl_schema_add(in, "f", SL_FLOAT64);
    sl_schema_add(in, "b", SL_BOOL);
    sl_schema_add(in, "s2", SL_STRING);
    /* key column orders: all five, strings only, one integer */
    const int orders[][NCOL + 1] = {{5, C_S2, C_I, C_F, C_B, C_S1},
                                    {2, C_S1, C_S2},
                                    {1, C_I}};
    for (int round = 0; round < 30; round++) {
        const uint32_t n = 1 + (uint32_t)(next(&x) % 700);
        sl_batch *b = sl__batch_new(in, n);
        char str[41];
        for (uint32_t r = 0; r < n; r++) {
            for (int c = 0; c < NCOL; c++) b->cols[c].valid[r] = next(&x) % 5 != 0;
            for (int c = C_S1; c <= C_S2; c += C_S2 - C_S1) {
                size_t len = next(&x) % 41;
                for (size_t i = 0; i < len; i++) /* NULs, 0xff and letters */
                    str[i] = (char)(next(&x) % 4 == 0 ? (next(&x) % 2 ? 0 : 0xff)
                                                      : 'a' + next(&x) % 26);
                sl_batch_set_str(b, c, r, str, len);
            }
            ((int64_t *)b->cols[C_I].data)[r] = (int64_t)next(&x);
            const double f[] = {0.0, -0.0, NAN, -1.5, 1e300, (double)(int64_t)next(&x)};
            ((double *)b->cols[C_F].data)[r] = f[next(&x) % 6];
            ((uint8_t *)b->cols[C_B].data)[r] = (uint8_t)(next(&x) % 3);
        }
        b->n = n;
        for (size_t o = 0; o < sizeof orders / sizeof *orders; o++) {
            sl__wkey k = {.nkey = orders[o][0], .cols = &orders[o][1], .in = in};
            uint32_t *rows = malloc(n * sizeof *rows), *off = malloc((n + 1) * sizeof *off),
                     *len = malloc(n * sizeof *len), m = 0;
            for (uint32_t r = 0; r < n; r++)
                if (next(&x) % 4) rows[m++] = r;
            /* each row's room exactly as the header states */
            off[0] = 0;
            for (uint32_t j = 0; j < m; j++) {
                uint32_t room = 8;
                for (int c = 0; c < k.nkey; c++) {
                    int col = k.cols[c];
                    switch (in->cols[col].type) {
                    case SL_STRING:
                        room += 3 + (b->cols[col].valid[rows[j]]
                                         ? 2 * ((const sl_str *)b->cols[col].data)[rows[j]].len
                                         : 0);
                        break;
                    case SL_BOOL: room += 2; break;
                    default: room += 9; break;
                    }
                }
                off[j + 1] = off[j] + room;
            }
            uint8_t *out = malloc(off[m] + 64);
            memset(out, 0xAA, off[m] + 64);
            sl__wkey_encode_rows(&k, b, rows, m, out, off, len);
            uint8_t want[512];
            for (uint32_t j = 0; j < m; j++) {
                size_t wl = sl__wkey_encode(&k, b, rows[j], want);
                assert_int_equal(len[j], wl);
                assert_true(len[j] <= off[j + 1] - off[j] - 8);
                assert_memory_equal(out + off[j], want, wl);
            }
            for (uint32_t i = off[m]; i < off[m] + 64; i++) assert_int_equal(out[i], 0xAA);
            free(out);
            free(rows);
            free(off);
            free(len);
        }
        sl__batch_free(b);
    }
    sl_schema_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_rows_equals_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
