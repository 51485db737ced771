/* An HTTPS client with OpenSSL linked in statically, for pytracer's TLS test (tests/tests/tls.rs):
 * the agent must find SSL_read in the executable itself, not in a libssl.so.
 *
 * usage: tls_static_client PORT PATH CA_FILE
 * Prints "ready", waits for a line on stdin (the test starts the tracer meanwhile), makes one
 * GET https://localhost:PORT/PATH with SSL_write/SSL_read on its own socket, prints the answer's
 * status line and exits. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "%s failed\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT PATH CA_FILE\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return fail("reading stdin");

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1) return fail("the CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return fail("connect");
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) return fail("the handshake");

    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n", argv[2], port);
    if (SSL_write(ssl, req, n) != n) return fail("SSL_write");
    char answer[8192];
    int got = 0, r;
    while (got < (int)sizeof answer - 1 && (r = SSL_read(ssl, answer + got, sizeof answer - 1 - got)) > 0) got += r;
    answer[got] = 0;
    char *eol = strstr(answer, "\r\n");
    if (eol) *eol = 0;
    printf("%s\n", answer);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return 0;
}
