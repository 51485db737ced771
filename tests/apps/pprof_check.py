"""Decodes a gzipped pprof file with the protobuf package, independently of the agent's encoder,
and prints one JSON object: each sample's labels and frames (leaf first, `function:line`).

The messages are declared here from pprof's proto/profile.proto (the fields a CPU profile uses,
same numbers), so no generated code is needed.
"""

import gzip
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def message(fd, name, fields):
    m = fd.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name


def profile_class():
    fd = descriptor_pb2.FileDescriptorProto(name="profile.proto", package="perftools.profiles", syntax="proto3")
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message(fd, "ValueType", [("type", 1, F.TYPE_INT64, opt, None), ("unit", 2, F.TYPE_INT64, opt, None)])
    message(fd, "Label", [("key", 1, F.TYPE_INT64, opt, None), ("str", 2, F.TYPE_INT64, opt, None),
                          ("num", 3, F.TYPE_INT64, opt, None)])
    message(fd, "Sample", [("location_id", 1, F.TYPE_UINT64, rep, None), ("value", 2, F.TYPE_INT64, rep, None),
                           ("label", 3, F.TYPE_MESSAGE, rep, ".perftools.profiles.Label")])
    message(fd, "Line", [("function_id", 1, F.TYPE_UINT64, opt, None), ("line", 2, F.TYPE_INT64, opt, None)])
    message(fd, "Location", [("id", 1, F.TYPE_UINT64, opt, None),
                             ("line", 4, F.TYPE_MESSAGE, rep, ".perftools.profiles.Line")])
    message(fd, "Function", [("id", 1, F.TYPE_UINT64, opt, None), ("name", 2, F.TYPE_INT64, opt, None),
                             ("system_name", 3, F.TYPE_INT64, opt, None), ("filename", 4, F.TYPE_INT64, opt, None)])
    message(fd, "Profile", [
        ("sample_type", 1, F.TYPE_MESSAGE, rep, ".perftools.profiles.ValueType"),
        ("sample", 2, F.TYPE_MESSAGE, rep, ".perftools.profiles.Sample"),
        ("location", 4, F.TYPE_MESSAGE, rep, ".perftools.profiles.Location"),
        ("function", 5, F.TYPE_MESSAGE, rep, ".perftools.profiles.Function"),
        ("string_table", 6, F.TYPE_STRING, rep, None),
        ("duration_nanos", 10, F.TYPE_INT64, opt, None),
        ("period_type", 11, F.TYPE_MESSAGE, opt, ".perftools.profiles.ValueType"),
        ("period", 12, F.TYPE_INT64, opt, None),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def main(path):
    p = profile_class()()
    with gzip.open(path, "rb") as f:
        p.ParseFromString(f.read())
    s = p.string_table
    functions = {f.id: s[f.name] for f in p.function}
    locations = {loc.id: [f"{functions[ln.function_id]}:{ln.line}" for ln in loc.line] for loc in p.location}
    out = {
        "sample_type": [[s[v.type], s[v.unit]] for v in p.sample_type],
        "period": p.period,
        "samples": [
            {
                "labels": {s[lb.key]: (s[lb.str] if lb.str else lb.num) for lb in smp.label},
                "frames": [fr for lid in smp.location_id for fr in locations[lid]],
                "value": list(smp.value),
            }
            for smp in p.sample
        ],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
