/* libFuzzer target for the configuration parsers of app/config.c, which it
 * includes to reach them. The first input byte picks the parser the rest
 * goes to: a turbochat.conf file, a .env file, or one REDIS_URL; the first
 * two then go through the loader's final checks (finish(), which merges
 * REDIS_URL) as config_load does. Every value read must leave a config that
 * config_dispose frees, and every error a line of text. */
#include <stdint.h>

#include "../../app/config.c"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* The loader of config_load with every default applied. */
static void loader_init(struct loader *ld, struct config *cfg, char *err, size_t errlen)
{
    char why[WHY_MAX];
    memset(cfg, 0, sizeof(*cfg));
    memset(ld, 0, sizeof(*ld));
    ld->cfg = cfg;
    ld->err = err;
    ld->errlen = errlen;
    err[0] = '\0';
    for (size_t i = 0; i < OPTION_COUNT; i++)
        CHECK(set_value(cfg, &options[i], options[i].def, why, sizeof(why)) == 0);
}

static void check_loaded(struct loader *ld, const char *err)
{
    CHECK(strlen(err) < 4096);
    CHECK(ld->nerr > 0 || err[0] == '\0');
    if (ld->nerr == 0) {
        struct config *cfg = ld->cfg;
        CHECK(cfg->node_id != NULL);
        CHECK(!cfg->redis_host || cfg->redis_tls == 0 || cfg->redis_tls == 1);
        CHECK(cfg->redis_port >= 1 && cfg->redis_port <= 65535);
    }
}

static void fuzz_file(const uint8_t *data, size_t size, bool dotenv)
{
    struct config cfg;
    struct loader ld;
    char err[4096];
    loader_init(&ld, &cfg, err, sizeof(err));
    FILE *f = fmemopen((void *)data, size, "r");
    CHECK(f != NULL);
    if (dotenv) {
        struct env_list list = {NULL, 0};
        parse_dotenv(&ld, f, &list);
        for (size_t i = 0; i < list.n; i++)
            apply_env(&ld, list.v[i].name, list.v[i].value, DOTENV_FILE, list.v[i].line);
        env_list_dispose(&list);
    } else {
        load_conf_file(&ld, "fuzz.conf", f);
    }
    fclose(f);
    finish(&ld);
    check_loaded(&ld, err);
    if (ld.nerr == 0) {
        /* the ranges of trusted_proxies, as config_load splits them */
        split_nets(cfg.trusted_proxies, &cfg.proxies);
        CHECK(!cfg.trusted_proxies || cfg.proxies.count > 0);
        for (size_t i = 0; i < cfg.proxies.count; i++)
            CHECK(cfg.proxies.items[i].bits <= (cfg.proxies.items[i].family == AF_INET ? 32 : 128));
        (void)config_nets_contain(&cfg.proxies, "10.1.2.3", 8);
    }
    config_dispose(&cfg);
}

static void fuzz_redis_url(const uint8_t *data, size_t size)
{
    char *url = xstrndup((const char *)data, size);
    struct redis_url u;
    char why[WHY_MAX];
    why[0] = '\0';
    if (redis_url_parse(url, &u, why, sizeof(why)) == 0) {
        CHECK(u.host != NULL && u.host[0] != '\0');
        CHECK(u.port >= 0 && u.port <= 65535);
        CHECK(u.tls == 0 || u.tls == 1);
        CHECK(!u.password || strlen(u.password) < size);
        redis_url_dispose(&u);
    } else {
        CHECK(why[0] != '\0');
        CHECK(u.host == NULL && u.username == NULL && u.password == NULL);
    }
    /* The whole path: set as redis_url, merged by finish(). */
    struct config cfg;
    struct loader ld;
    char err[4096];
    loader_init(&ld, &cfg, err, sizeof(err));
    apply(&ld, OPT_IDX(redis_url), url, (struct origin){LAYER_ENV, NULL, 0});
    finish(&ld);
    check_loaded(&ld, err);
    config_dispose(&cfg);
    free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_file(data + 1, size - 1, false);
        break;
    case 1:
        fuzz_file(data + 1, size - 1, true);
        break;
    default:
        fuzz_redis_url(data + 1, size - 1);
        break;
    }
    return 0;
}
