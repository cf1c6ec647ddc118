"""A real pycsw (CSW 2.0.2) on loopback over SQLite, loaded with the records in a folder.

    serve_pycsw.py RECORDS_DIR [--maxrecords N]

Prints its endpoint (http://127.0.0.1:PORT/csw) on stdout once it answers, and stops when
its standard input closes (the test process that started it ended), so no server outlives
the tests. pycsw's own code does everything else: loading (pycsw-admin's load_records),
paging at its `maxrecords`, the CSW and OAI-PMH (`?mode=oaipmh`) endpoints.
"""

import argparse
import os
import sys
import tempfile
import threading
import warnings
from wsgiref.simple_server import WSGIRequestHandler, make_server

warnings.simplefilter("ignore")

CONFIG = """[server]
home={home}
url={url}
mimetype=application/xml; charset=UTF-8
encoding=UTF-8
language=en-US
maxrecords={maxrecords}
loglevel=ERROR
logfile={home}/pycsw.log
pretty_print=true
gzip_compresslevel=0
domainquerytype=list
domaincounts=false
profiles=apiso

[manager]
transactions=false
allowed_ips=127.0.0.1

[metadata:main]
identification_title=Trawl test catalogue
identification_abstract=Records written for Trawl's tests
identification_keywords=test
identification_keywords_type=theme
identification_fees=None
identification_accessconstraints=None
provider_name=Trawl
provider_url=https://example.org/
contact_name=Trawl
contact_position=Tests
contact_address=-
contact_city=-
contact_stateorprovince=-
contact_postalcode=-
contact_country=-
contact_phone=-
contact_fax=-
contact_email=tests@example.org
contact_url=https://example.org/
contact_hours=-
contact_instructions=-
contact_role=pointOfContact

[repository]
database=sqlite:///{home}/records.db
table=records

[metadata:inspire]
enabled=false
languages_supported=eng
default_language=eng
date=2026-01-01
gemet_keywords=Utility and governmental services
conformity_service=notEvaluated
contact_name=Trawl
contact_email=tests@example.org
temp_extent=2026-01-01/2026-12-31
"""


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("records")
    parser.add_argument("--maxrecords", type=int, default=10)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="trawl-pycsw-")
    httpd = make_server("127.0.0.1", 0, None, handler_class=Quiet)
    url = f"http://127.0.0.1:{httpd.server_port}/csw"
    config_path = os.path.join(home, "pycsw.cfg")
    with open(config_path, "w") as f:
        f.write(CONFIG.format(home=home, url=url, maxrecords=args.maxrecords))
    os.environ["PYCSW_CONFIG"] = config_path

    from pycsw.core import admin, config
    from pycsw import wsgi

    database = f"sqlite:///{home}/records.db"
    admin.setup_db(database, "records", home)
    admin.load_records(config.StaticContext(), database, "records", args.records, False, True)

    def application(env, start_response):
        env["PYCSW_CONFIG"] = config_path
        return wsgi.application(env, start_response)

    httpd.set_app(application)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(url, flush=True)
    # pycsw's WSGI wrapper prints every request path; nobody reads them.
    sys.stdout = open(os.devnull, "w")
    sys.stdin.read()


if __name__ == "__main__":
    main()
