"""A real OAI-PMH 2.0 repository on loopback: the `oaipmh` package's server (PyPI) over the
records in a JSON file, read again on every request, so a test changes the repository by
rewriting the file (a record deleted, added or changed).

    serve_oai.py RECORDS_JSON [--batch N] [--deleted-record persistent|transient|no]

RECORDS_JSON is a list of {"id", "datestamp" (ISO 8601, UTC), "sets": [...],
"deleted": bool, "dc": {"title": [...], "creator": [...], ...}}. The package does the
protocol: verbs, argument checks, errors, resumption tokens (a page of `--batch` records),
`from`/`until`, sets, deleted headers. Prints its base URL once it answers and stops when its
standard input closes, so no server outlives the tests that started it.
"""

import argparse
import datetime
import json
import sys
import threading
import urllib.parse
from wsgiref.simple_server import WSGIRequestHandler, make_server

from oaipmh import common, error, metadata, server

SETS = {}


class Repository:
    """The `IOAI` interface the package's `Server` drives."""

    def __init__(self, path, base_url, deleted_record):
        self.path = path
        self.base_url = base_url
        self.deleted_record = deleted_record

    def records(self):
        with open(self.path) as f:
            return json.load(f)

    @staticmethod
    def stamp(record):
        return datetime.datetime.strptime(record["datestamp"], "%Y-%m-%dT%H:%M:%SZ")

    def header(self, record):
        return common.Header(
            None, record["id"], self.stamp(record), record.get("sets", []), record.get("deleted", False)
        )

    def identify(self):
        earliest = min((self.stamp(r) for r in self.records()), default=datetime.datetime(2000, 1, 1))
        return common.Identify(
            repositoryName="Trawl test repository",
            baseURL=self.base_url,
            protocolVersion="2.0",
            adminEmails=["tests@example.org"],
            earliestDatestamp=earliest,
            deletedRecord=self.deleted_record,
            granularity="YYYY-MM-DDThh:mm:ssZ",
            compression=["identity"],
        )

    def listMetadataFormats(self, identifier=None):
        return [("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc.xsd", "http://www.openarchives.org/OAI/2.0/oai_dc/")]

    def listSets(self):
        names = sorted({s for r in self.records() for s in r.get("sets", [])})
        return [(name, name.replace("_", " ").title(), None) for name in names]

    def selected(self, metadataPrefix, set=None, from_=None, until=None):
        if metadataPrefix != "oai_dc":
            raise error.CannotDisseminateFormatError(metadataPrefix)
        out = [
            r
            for r in self.records()
            if (set is None or set in r.get("sets", []))
            and (from_ is None or self.stamp(r) >= from_)
            and (until is None or self.stamp(r) <= until)
        ]
        if not out:
            raise error.NoRecordsMatchError("no records match")
        return out

    def listIdentifiers(self, metadataPrefix, set=None, from_=None, until=None):
        return [self.header(r) for r in self.selected(metadataPrefix, set, from_, until)]

    def listRecords(self, metadataPrefix, set=None, from_=None, until=None):
        return [self.full(r) for r in self.selected(metadataPrefix, set, from_, until)]

    def full(self, record):
        if record.get("deleted"):
            return self.header(record), None, None
        return self.header(record), common.Metadata(None, record.get("dc", {})), None

    def getRecord(self, metadataPrefix, identifier):
        if metadataPrefix != "oai_dc":
            raise error.CannotDisseminateFormatError(metadataPrefix)
        for record in self.records():
            if record["id"] == identifier:
                return self.full(record)
        raise error.IdDoesNotExistError(identifier)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("records")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--deleted-record", default="persistent")
    args = parser.parse_args()

    httpd = make_server("127.0.0.1", 0, None, handler_class=Quiet)
    base_url = f"http://127.0.0.1:{httpd.server_port}/oai"
    registry = metadata.MetadataRegistry()
    registry.registerWriter("oai_dc", server.oai_dc_writer)
    oai = server.Server(
        Repository(args.records, base_url, args.deleted_record),
        registry,
        resumption_batch_size=args.batch,
    )

    def application(env, start_response):
        query = urllib.parse.parse_qs(env.get("QUERY_STRING", ""), keep_blank_values=True)
        if env.get("REQUEST_METHOD") == "POST":
            length = int(env.get("CONTENT_LENGTH") or 0)
            query.update(urllib.parse.parse_qs(env["wsgi.input"].read(length).decode()))
        # A repeated argument is the package's badArgument; pass it on as a list to see it.
        kw = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        body = oai.handleRequest(kw)
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    httpd.set_app(application)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(base_url, flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
