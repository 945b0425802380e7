"""A local OTLP/HTTP trace receiver for the tracing tests and the benchmark.

It decodes every request with OpenTelemetry's own protocol definitions (the opentelemetry-proto
package), never with the extension's encoder, and writes each span as one JSON line to --out:
ids in hex, name, kind, flags, times, attributes, status and the resource's attributes, plus
the request's Content-Type. --fail N answers 503 to the first N requests (a collector that is
down for a while). --discard decodes and counts without writing spans (the benchmark). It
prints its port on the first line of stdout, then serves until killed.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v):
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail", type=int, default=0)
    ap.add_argument("--discard", action="store_true")
    args = ap.parse_args()
    state = {"failures_left": args.fail}
    out = open(args.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if state["failures_left"] > 0:
                state["failures_left"] -= 1
                out.write(json.dumps({"refused": True}) + "\n")
                self.send_response(503)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            n = 0
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        n += 1
                        if args.discard:
                            continue
                        out.write(json.dumps({
                            "content_type": self.headers.get("content-type"),
                            "path": self.path,
                            "scope": ss.scope.name,
                            "resource": resource,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "trace_state": s.trace_state,
                            "flags": s.flags,
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": attributes(s.attributes),
                            "dropped_attributes_count": s.dropped_attributes_count,
                            "status_code": s.status.code,
                            "status_message": s.status.message,
                        }) + "\n")
            if args.discard:
                out.write(json.dumps({"spans": n}) + "\n")
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
