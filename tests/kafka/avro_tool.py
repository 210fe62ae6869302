"""The independent Avro implementation of the tests: Debian's python3-avro
(the Apache Avro Python library) encodes and decodes the datums, and the
single-object framing (0xC3 0x01, CRC-64-AVRO fingerprint of the Parsing
Canonical Form, little-endian) is written here from the Avro specification,
not taken from sluice. Run as a program with a Python that has `avro`:

  avro_tool.py encode SCHEMA.json ROWS.json OUTDIR   one file per message
  avro_tool.py decode SCHEMA.json MESSAGES.bin       (kcat -f '%R%s') -> JSON
  avro_tool.py fingerprint SCHEMA.json               -> hex, canonical form

Rows are JSON objects; timestamp-millis fields are epoch milliseconds."""
import datetime
import io
import json
import os
import struct
import sys

EMPTY = 0xc15d213aa4d7a795
UTC = datetime.timezone.utc


def crc64_avro(data):
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xff]
    return fp


def canonical(s, ns=None):
    """Parsing Canonical Form (Avro specification, "Transforming into
    Parsing Canonical Form"), for the records, unions and primitives used
    here: attributes other than name/type/fields dropped (so logicalType),
    primitives in their simple form, names made full."""
    if isinstance(s, str):
        return json.dumps(s)
    if isinstance(s, list):
        return "[" + ",".join(canonical(x, ns) for x in s) + "]"
    t = s["type"]
    if t == "record":
        name = s["name"]
        if "." not in name and s.get("namespace", ns):
            name = s.get("namespace", ns) + "." + name
        space = name.rsplit(".", 1)[0] if "." in name else None
        fields = ",".join('{"name":%s,"type":%s}' % (json.dumps(f["name"]),
                                                     canonical(f["type"], space))
                          for f in s["fields"])
        return '{"name":%s,"type":"record","fields":[%s]}' % (json.dumps(name), fields)
    return canonical(t, ns)


def header(schema_json):
    fp = crc64_avro(canonical(json.loads(schema_json)).encode())
    return b"\xc3\x01" + struct.pack("<Q", fp), fp


def ts_fields(schema_json):
    out = set()
    for f in json.loads(schema_json)["fields"]:
        for b in (f["type"] if isinstance(f["type"], list) else [f["type"]]):
            if isinstance(b, dict) and b.get("logicalType") == "timestamp-millis":
                out.add(f["name"])
    return out


def main():
    import avro.io
    import avro.schema
    cmd, schema_path = sys.argv[1], sys.argv[2]
    text = open(schema_path).read()
    schema = avro.schema.parse(text)
    head, fp = header(text)
    tsf = ts_fields(text)
    if cmd == "fingerprint":
        print(f"{fp:016x}")
        print(canonical(json.loads(text)))
    elif cmd == "encode":
        rows = json.load(open(sys.argv[3]))
        w = avro.io.DatumWriter(schema)
        for i, row in enumerate(rows):
            row = {k: (datetime.datetime.fromtimestamp(v / 1000, UTC)
                       if k in tsf and v is not None else v) for k, v in row.items()}
            buf = io.BytesIO()
            w.write(row, avro.io.BinaryEncoder(buf))
            with open(os.path.join(sys.argv[4], f"m{i:05d}.bin"), "wb") as f:
                f.write(head + buf.getvalue())
    elif cmd == "decode":
        data = open(sys.argv[3], "rb").read()
        r = avro.io.DatumReader(schema)
        out, off = [], 0
        while off < len(data):
            (n,) = struct.unpack(">i", data[off:off + 4])
            msg = data[off + 4:off + 4 + n]
            off += 4 + n
            assert msg[:10] == head, f"header {msg[:10].hex()} is not {head.hex()}"
            row = r.read(avro.io.BinaryDecoder(io.BytesIO(msg[10:])))
            for k in tsf:
                if row[k] is not None:
                    row[k] = round(row[k].timestamp() * 1000)
            out.append(row)
        json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
