/* keygen.c — creates a pseudonymisation key file with a fresh random secret
 * (OpenSSL's CSPRNG), readable by its owner only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/core.h"

int sl_keyring_create(const char *path, const char *key_id, char *err,
                      size_t errsz)
{
    if (!path || !key_id || !*key_id || strpbrk(key_id, " \t\r\n#"))
        return sl__err(err, errsz, SL_EINVAL,
                       "keygen: the key id must be a non-empty word");
    unsigned char key[32];
    if (RAND_bytes(key, sizeof key) != 1)
        return sl__err(err, errsz, SL_ECRYPTO, "keygen: no random bytes from OpenSSL");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return sl__err(err, errsz, errno == EEXIST ? SL_EINVAL : SL_EIO,
                       "keygen: cannot create %s: %s", path, strerror(errno));
    char line[256];
    int n = snprintf(line, sizeof line,
                     "# sluice pseudonymisation keys: KEY_ID HEX_SECRET\n%s ", key_id);
    for (size_t i = 0; i < sizeof key; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%02x", key[i]);
    line[n++] = '\n';
    OPENSSL_cleanse(key, sizeof key);
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    OPENSSL_cleanse(line, sizeof line);
    close(fd);
    if (!ok) return sl__err(err, errsz, SL_EIO, "keygen: cannot write %s", path);
    return 0;
}
