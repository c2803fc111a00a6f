/* SPDX-License-Identifier: MIT */
/* worker.c: the worker thread's loop and how it carries out the control thread's orders. */
#include "core/worker.h"
#include "core/log.h"

#include <lauxlib.h>
#include <string.h>

static void to_control(struct cc_worker *w, enum cc_msg_type type, int64_t a, int64_t b, void *p)
{
    struct cc_msg m = {.type = type, .from = w->index, .a = a, .b = b, .p = p};
    cc_mq_push(w->to_control, &m);
}

static void send_counts(struct cc_worker *w)
{
    struct cc_vm *vm = &w->vm;
    uint32_t *counts = cc_xcalloc(vm->nclasses + 1, sizeof(*counts));
    for (uint32_t c = 0; c < vm->nclasses; c++)
        counts[c] = vm->lists[c].n;
    to_control(w, CC_MSG_USERS, vm->users, (int64_t)w->spawns_done, counts);
    w->counts_dirty = false;
    if (w->stopping_all && vm->users == 0) {
        w->stopping_all = false;
        to_control(w, CC_MSG_USERS_DONE, 0, 0, NULL);
    }
}

static void report_cb(uv_check_t *h)
{
    struct cc_worker *w = cc_container_of(h, struct cc_worker, report);
    uv_check_stop(h);
    if (w->counts_dirty) send_counts(w);
}

static void users_changed(struct cc_vm *vm)
{
    struct cc_worker *w = vm->owner;
    if (!w->counts_dirty) {
        w->counts_dirty = true;
        uv_check_start(&w->report, report_cb);
    }
}

static void stop_test(struct cc_vm *vm)
{
    struct cc_worker *w = vm->owner;
    to_control(w, CC_MSG_STOP_TEST, 0, 0, NULL);
}

static const struct cc_vm_hooks hooks = {
    .users_changed = users_changed,
    .stop_test = stop_test,
};

static void handle(struct cc_worker *w, const struct cc_msg *m)
{
    struct cc_vm *vm = &w->vm;
    switch (m->type) {
    case CC_MSG_SPAWN:
        cc_vm_spawn(vm, (uint32_t)m->a, (uint32_t)m->b);
        w->spawns_done++;
        users_changed(vm);
        break;
    case CC_MSG_STOP_USERS:
        cc_vm_stop_users(vm, (uint32_t)m->a, (uint32_t)m->b, m->d > 0);
        break;
    case CC_MSG_ARRIVAL:
        cc_vm_set_arrival_rate(vm, (uint32_t)m->a, m->d);
        break;
    case CC_MSG_STOP_ALL:
    case CC_MSG_KILL_ALL:
        for (uint32_t c = 0; vm->arrivals && c < vm->nclasses; c++)
            cc_vm_set_arrival_rate(vm, c, 0); /* no new iteration while stopping */
        w->stopping_all = true;
        cc_vm_stop_all(vm, m->type == CC_MSG_STOP_ALL && m->d > 0);
        users_changed(vm);
        break;
    case CC_MSG_SWAP: {
        struct cc_shard *full = w->rec.shard;
        CC_ASSERT(w->spare != NULL);
        w->rec.shard = w->spare;
        w->spare = NULL;
        to_control(w, CC_MSG_SHARD, 0, 0, full);
        break;
    }
    case CC_MSG_SHARD_BACK:
        w->spare = m->p;
        break;
    case CC_MSG_SHARED:
        lua_pushstring(vm->L, m->p);
        cc_vm_pcall(vm, "shared_load", 1, 0);
        cc_free(m->p);
        break;
    case CC_MSG_SET_HOST:
        lua_pushstring(vm->L, m->p);
        cc_vm_pcall(vm, "set_host", 1, 0);
        cc_free(m->p);
        break;
    case CC_MSG_QUIT:
        uv_stop(&w->loop);
        break;
    default:
        CC_ASSERT(!"unexpected message for a worker");
    }
}

static void async_cb(uv_async_t *h)
{
    struct cc_worker *w = cc_container_of(h, struct cc_worker, async);
    struct cc_msg *batch = NULL;
    size_t cap = 0;
    size_t n = cc_mq_take(&w->inbox, &batch, &cap);
    for (size_t i = 0; i < n; i++)
        handle(w, &batch[i]);
    cc_free(batch);
}

static void init_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_worker *w = arg;
    to_control(w, CC_MSG_READY, 0, 0, NULL);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void worker_main(void *arg)
{
    struct cc_worker *w = arg;
    cc_shard_init(&w->shards[0]);
    cc_shard_init(&w->shards[1]);
    cc_recorder_init(&w->rec, &w->shards[0]);
    w->spare = &w->shards[1];

    char *err = NULL;
    if (cc_vm_init(&w->vm, &w->loop, &w->opts, &w->rec, &hooks, w, &err) != 0) {
        to_control(w, CC_MSG_READY, 1, 0, err);
    } else {
        w->loaded = true;
        lua_pushliteral(w->vm.L, "init");
        cc_vm_call(&w->vm, "fire", 1, init_done, w);
    }

    uv_run(&w->loop, UV_RUN_DEFAULT);

    /* QUIT: whatever still runs is discarded without calling back into Lua */
    cc_vm_close(&w->vm);
    cc_vm_release(&w->vm);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    CC_ASSERT(uv_loop_close(&w->loop) == 0);
    struct cc_msg *left = NULL;
    size_t cap = 0;
    size_t n = cc_mq_take(&w->inbox, &left, &cap);
    for (size_t i = 0; i < n; i++)
        if (left[i].type == CC_MSG_SHARED || left[i].type == CC_MSG_SET_HOST) cc_free(left[i].p);
    cc_free(left);
    cc_mq_release(&w->inbox);
    cc_recorder_release(&w->rec);
    cc_shard_release(&w->shards[0]);
    cc_shard_release(&w->shards[1]);
}

void cc_worker_start(struct cc_worker *w)
{
    /* the inbox exists before the thread does, so orders sent at once are not lost */
    CC_ASSERT(uv_loop_init(&w->loop) == 0);
    uv_async_init(&w->loop, &w->async, async_cb);
    uv_check_init(&w->loop, &w->report);
    cc_mq_init(&w->inbox, &w->async);
    CC_ASSERT(uv_thread_create(&w->thread, worker_main, w) == 0);
    w->started = true;
}

void cc_worker_join(struct cc_worker *w)
{
    uv_thread_join(&w->thread);
}
