"""What an informer does, with the Python `kubernetes` client from PyPI,
against oxetcd-apiserver (run by tests/clients.rs with a kubeconfig, the
server compacting its store every second, its watch cache's windows at most
1,024 events):

1. list configmaps, then watch from the list's resourceVersion while
   objects are created, updated and deleted: every event checked;
2. writes elsewhere move the watch cache's window past the informer's last
   resourceVersion; its next watch gets 410 Expired, it relists and
   resumes, and sees the next changes;
3. a watch from the first list's (long gone) resourceVersion gets an ERROR
   event with code 410, which the client raises as ApiException(410);
4. the informer's cache equals a fresh list.

Prints "informer: ok" and exits 0 when all holds; any failure raises.
"""

import queue
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "informer"
NOISE_NS = "noise"
WATCH_TIMEOUT = 3


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Informer:
    """client-go's reflector in small: list, watch from the list's RV,
    re-watch from the last RV when a watch ends, relist on 410."""

    def __init__(self, v1):
        self.v1 = v1
        self.cache = {}
        self.events = queue.Queue()
        self.relists = 0
        self.stopping = False
        self.lock = threading.Lock()

    def list(self):
        items = self.v1.list_namespaced_config_map(NS)
        with self.lock:
            self.cache = {
                o.metadata.name: (o.metadata.resource_version, o.data or {})
                for o in items.items
            }
        return items.metadata.resource_version

    def run(self, rv):
        try:
            while not self.stopping:
                try:
                    w = watch.Watch()
                    for e in w.stream(
                        self.v1.list_namespaced_config_map,
                        NS,
                        resource_version=rv,
                        timeout_seconds=WATCH_TIMEOUT,
                    ):
                        obj = e["object"]
                        name = obj.metadata.name
                        rv = obj.metadata.resource_version
                        with self.lock:
                            if e["type"] == "DELETED":
                                self.cache.pop(name, None)
                            else:
                                self.cache[name] = (rv, obj.data or {})
                        self.events.put((e["type"], name, rv, obj.data or {}))
                except ApiException as ex:
                    check(ex.status == 410, f"watch failed: {ex}")
                    self.events.put(("410", str(ex.reason), rv, {}))
                    rv = self.list()
                    self.relists += 1
                    self.events.put(("RELISTED", "", rv, {}))
        except Exception as ex:  # noqa: BLE001 - handed to the main thread
            self.events.put(("FAILED", repr(ex), "", {}))

    def next_event(self, timeout=20):
        e = self.events.get(timeout=timeout)
        check(e[0] != "FAILED", f"informer thread: {e[1]}")
        return e


def cm(name, value):
    return {"metadata": {"name": name}, "data": {"v": value}}


def expect(inf, want_type, want_name, want_rv=None, want_data=None):
    t, name, rv, data = inf.next_event()
    check(
        (t, name) == (want_type, want_name),
        f"event {t} {name}, wanted {want_type} {want_name}",
    )
    if want_rv is not None:
        check(rv == want_rv, f"{t} {name} at {rv}, wanted {want_rv}")
    if want_data is not None:
        check(data == want_data, f"{t} {name} data {data}, wanted {want_data}")
    return int(rv)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()
    for ns in (NS, NOISE_NS):
        v1.create_namespace({"metadata": {"name": ns}})

    inf = Informer(v1)
    first_rv = inf.list()
    check(inf.cache == {}, f"empty at first: {inf.cache}")
    t = threading.Thread(target=inf.run, args=(first_rv,), daemon=True)
    t.start()
    time.sleep(0.5)

    # 1. Changes while the informer watches: each event, in order.
    c1 = v1.create_namespaced_config_map(NS, cm("c1", "1"))
    c2 = v1.create_namespaced_config_map(NS, cm("c2", "1"))
    # A list body: the client sends it as application/json-patch+json.
    c1b = v1.patch_namespaced_config_map(
        "c1", NS, [{"op": "replace", "path": "/data/v", "value": "2"}]
    )
    v1.delete_namespaced_config_map("c2", NS)
    rvs = [
        expect(inf, "ADDED", "c1", c1.metadata.resource_version, {"v": "1"}),
        expect(inf, "ADDED", "c2", c2.metadata.resource_version, {"v": "1"}),
        expect(inf, "MODIFIED", "c1", c1b.metadata.resource_version, {"v": "2"}),
        expect(inf, "DELETED", "c2", None, {"v": "1"}),
    ]
    check(rvs == sorted(set(rvs)), f"rising resourceVersions: {rvs}")
    check(int(first_rv) < rvs[0], f"after the list's {first_rv}: {rvs}")

    # 2. Writes elsewhere until the watch cache's window passes the
    # informer's last resourceVersion and its next watch gets 410: it
    # relists and resumes.
    deadline = time.time() + 120
    n = 0
    while True:
        v1.create_namespaced_config_map(NOISE_NS, cm(f"n{n}", str(n)))
        n += 1
        try:
            e = inf.events.get(timeout=0.1)
            break
        except queue.Empty:
            check(time.time() < deadline, "no 410 within 120 s")
    check(e[0] == "410", f"a 410 first, got {e}")
    check("Expired" in e[1] and "too old resource version" in e[1], e[1])
    t_, _, relist_rv, _ = inf.next_event()
    check(t_ == "RELISTED", t_)
    check(int(relist_rv) > rvs[-1], f"relisted at {relist_rv}")
    with inf.lock:
        check(list(inf.cache) == ["c1"], f"relisted cache {inf.cache}")
    c3 = v1.create_namespaced_config_map(NS, cm("c3", "1"))
    c1c = v1.replace_namespaced_config_map("c1", NS, cm("c1", "3"))
    v1.delete_namespaced_config_map("c1", NS)
    expect(inf, "ADDED", "c3", c3.metadata.resource_version, {"v": "1"})
    expect(inf, "MODIFIED", "c1", c1c.metadata.resource_version, {"v": "3"})
    expect(inf, "DELETED", "c1", None, {"v": "3"})

    # 3. A watch from the first list's resourceVersion: gone, 410.
    try:
        for _ in watch.Watch().stream(
            v1.list_namespaced_config_map, NS, resource_version=first_rv, timeout_seconds=5
        ):
            raise AssertionError("an event from a gone resourceVersion")
        raise AssertionError("the watch ended without a 410")
    except ApiException as ex:
        check(ex.status == 410, f"status {ex.status}")
        check(f"too old resource version: {first_rv}" in str(ex.reason), ex.reason)

    # 4. The cache is what a fresh list says.
    inf.stopping = True
    fresh = v1.list_namespaced_config_map(NS)
    want = {o.metadata.name: (o.metadata.resource_version, o.data or {}) for o in fresh.items}
    with inf.lock:
        check(inf.cache == want, f"cache {inf.cache} != list {want}")
    check(inf.relists == 1, f"relists: {inf.relists}")
    print(f"informer: ok ({n} writes elsewhere before the 410)")


if __name__ == "__main__":
    main()
