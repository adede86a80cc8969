/* broker: what every backend shares: waiting for a publish's outcome. */
#include "broker.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>

#include "proto.h"
#include "util.h"

/* A publish a thread waits for. */
struct sync_publish {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
    int status;
    struct chat_msg *result; /* copy of the stored event */
};

static void on_published(void *ctx, int status, const struct chat_msg *msg)
{
    struct sync_publish *p = ctx;
    pthread_mutex_lock(&p->lock);
    p->status = status;
    p->result = status >= 0 ? chat_msg_clone(msg) : NULL;
    p->done = true;
    pthread_cond_signal(&p->done_cond);
    pthread_mutex_unlock(&p->lock);
}

int broker_publish_wait(struct broker *b, struct chat_msg *msg, struct chat_msg **result)
{
    struct sync_publish p = {.done = false};
    *result = NULL;
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.done_cond, NULL);
    int rc = broker_publish(b, msg, on_published, &p);
    if (rc == 0) {
        pthread_mutex_lock(&p.lock);
        while (!p.done)
            pthread_cond_wait(&p.done_cond, &p.lock);
        pthread_mutex_unlock(&p.lock);
        rc = p.status;
        *result = p.result;
    }
    pthread_cond_destroy(&p.done_cond);
    pthread_mutex_destroy(&p.lock);
    return rc;
}

int broker_publish_record(struct broker *b, const char *log, enum chat_kind kind, const char *actor,
                          struct cJSON *rec, const char *claim)
{
    char *json = proto_encode_json(rec, NULL);
    cJSON_Delete(rec);
    struct chat_msg *ev = chat_msg_create(log, actor, json, NULL);
    free(json);
    ev->kind = kind;
    ev->claim = claim ? xstrdup(claim) : NULL;
    struct chat_msg *stored = NULL;
    int rc = broker_publish_wait(b, ev, &stored);
    chat_msg_free(stored);
    return rc < 0 ? rc : 0;
}
