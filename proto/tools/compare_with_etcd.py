#!/usr/bin/env python3
"""Compare oxetcd's protos with etcd's reference protos, via protoc descriptor sets.

Usage: compare_with_etcd.py [REF_ROOT]
  REF_ROOT: root of an etcd 3.4 source tree, default the one installed by the
  Debian package golang-etcd-server-dev (/usr/share/gocode/src/go.etcd.io/etcd).

Strips gogoproto / google.api annotations from the reference files, remaps
their import paths to ours, compiles both sides with the protoc shipped by the
protoc-bin-vendored crate (run a cargo build first so it is in ~/.cargo) and
diffs a sorted listing of every message field (name, number, label, type),
enum value and rpc (with streaming flags). Lines starting with '>' exist only
in ours: they must be the etcd 3.5/3.6 additions over 3.4.
"""
import glob, os, re, subprocess, sys, tempfile

REF = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/gocode/src/go.etcd.io/etcd"
OUTDIR = tempfile.mkdtemp(prefix="etcd-proto-cmp-")
OURS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "etcd")
PROTOC = glob.glob(os.path.expanduser(
    "~/.cargo/registry/src/*/protoc-bin-vendored-linux-x86_64-*/bin/protoc"))[0]
REF_FILES = {
    "mvccpb/kv.proto": "mvcc/mvccpb/kv.proto",
    "authpb/auth.proto": "auth/authpb/auth.proto",
    "etcdserverpb/rpc.proto": "etcdserver/etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto": "etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto": "etcdserver/api/v3election/v3electionpb/v3election.proto",
}

def strip(text):
    out, i = [], 0
    # drop `option (x.y) = { ... };` blocks (brace counting)
    while True:
        m = re.search(r'option\s*\((google\.api\.http|grpc\.gateway[^)]*)\)\s*=\s*\{', text[i:])
        if not m:
            out.append(text[i:]); break
        out.append(text[i:i + m.start()])
        j, depth = i + m.end(), 1
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0); j += 1
        j = text.index(";", j) + 1
        i = j
    text = "".join(out)
    text = re.sub(r'^\s*import\s+"(gogoproto|google|protoc-gen)[^"]*";\s*$', "", text, flags=re.M)
    text = re.sub(r'^\s*option\s*\((gogoproto|versionpb)[^;]*;\s*$', "", text, flags=re.M)
    text = re.sub(r'^\s*option\s+go_package[^;]*;\s*$', "", text, flags=re.M)
    text = re.sub(r'\s*\[\s*\((gogoproto|versionpb)[^\]]*\]', "", text)
    for ours, ref in REF_FILES.items():
        text = text.replace('"etcd/' + ref + '"', '"' + ours + '"')
        text = text.replace('"etcd/api/' + ours + '"', '"' + ours + '"')
    return text

# --- minimal protobuf wire decoder -------------------------------------------
def fields(buf):
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            ln, i = varint(buf, i); v = buf[i:i + ln]; i += ln
        elif wt == 1:
            v = buf[i:i + 8]; i += 8
        elif wt == 5:
            v = buf[i:i + 4]; i += 4
        else:
            raise ValueError(wt)
        yield num, v

def varint(buf, i):
    r = s = 0
    while True:
        b = buf[i]; i += 1
        r |= (b & 0x7F) << s; s += 7
        if not b & 0x80:
            return r, i

def get(buf, num, kind=None):
    return [v.decode() if kind == "s" else v for f, v in fields(buf) if f == num]

TYPES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool",
         9: "string", 11: "message", 12: "bytes", 13: "uint32", 14: "enum"}
LABELS = {1: "", 2: "required ", 3: "repeated "}

def walk_enum(prefix, e, out):
    name = prefix + get(e, 1, "s")[0]
    for v in get(e, 2):
        out.append(f"enum {name} {get(v,1,'s')[0]} = {get(v,2)[0]}")

def walk_msg(prefix, m, out):
    name = prefix + get(m, 1, "s")[0]
    oneofs = [get(o, 1, "s")[0] for o in get(m, 8)]
    out.append(f"message {name}")
    for f in get(m, 2):
        fname = get(f, 1, "s")[0]; num = get(f, 3)[0]
        label = LABELS[get(f, 4)[0]]; typ = TYPES.get(get(f, 5)[0], "?")
        tn = get(f, 6, "s"); tn = " " + tn[0] if tn else ""
        oi = get(f, 9); oi = f" oneof {oneofs[oi[0]]}" if oi else ""
        out.append(f"field {name}.{fname} = {num} {label}{typ}{tn}{oi}")
    for n in get(m, 3):
        walk_msg(name + ".", n, out)
    for e in get(m, 4):
        walk_enum(name + ".", e, out)

def listing(root, files):
    with tempfile.NamedTemporaryFile(suffix=".bin") as tmp:
        subprocess.run([PROTOC, "-I", root, "-o", tmp.name, *files], check=True)
        data = open(tmp.name, "rb").read()
    out = []
    for fd in get(data, 1):
        pkg = get(fd, 2, "s")[0] + "."
        out.append(f"file {get(fd,1,'s')[0]} package {pkg[:-1]}")
        for m in get(fd, 4): walk_msg(pkg, m, out)
        for e in get(fd, 5): walk_enum(pkg, e, out)
        for s in get(fd, 6):
            sname = pkg + get(s, 1, "s")[0]
            out.append(f"service {sname}")
            for r in get(s, 2):
                cs = "stream " if get(r, 5) and get(r, 5)[0] else ""
                ss = "stream " if get(r, 6) and get(r, 6)[0] else ""
                out.append(f"rpc /{sname}/{get(r,1,'s')[0]}({cs}{get(r,2,'s')[0]}) returns ({ss}{get(r,3,'s')[0]})")
    return sorted(out)

ref_root = tempfile.mkdtemp()
for ours, ref in REF_FILES.items():
    os.makedirs(os.path.join(ref_root, os.path.dirname(ours)), exist_ok=True)
    with open(os.path.join(REF, ref)) as src, open(os.path.join(ref_root, ours), "w") as dst:
        dst.write(strip(src.read()))

a = listing(ref_root, list(REF_FILES))
b = listing(OURS, list(REF_FILES))
for name, lines in (("ref.txt", a), ("ours.txt", b)):
    with open(os.path.join(OUTDIR, name), "w") as f:
        f.write("\n".join(lines) + "\n")
print(f"reference: {len(a)} lines, ours: {len(b)} lines")
r = subprocess.run(["diff", os.path.join(OUTDIR, "ref.txt"), os.path.join(OUTDIR, "ours.txt")], capture_output=True, text=True)
print(r.stdout or "IDENTICAL")
