"""Runs postfix-mta-sts-resolver's own resolver (what `mta-sts-query DOMAIN` runs) against
mailzone: its DNS queries go to mailzone's DNS port (MZ_DNS, ip:port) and the policy's HTTPS
connection goes to the address mailzone gives for mta-sts.<domain>, on the web listener's
port (MZ_HTTPS_PORT), trusting only the test CA (MZ_CA). Only where to connect is changed:
the TXT parsing, the HTTPS fetch (certificate checked for mta-sts.<domain>), the media type
and the policy checks are the resolver's. Prints the result as JSON."""

import asyncio
import json
import os
import socket
import ssl
import sys

import aiodns
import aiohttp
from aiohttp.abc import AbstractResolver

from postfix_mta_sts_resolver import resolver as sts

DNS = os.environ["MZ_DNS"]
HTTPS_PORT = int(os.environ["MZ_HTTPS_PORT"])
CONTEXT = ssl.create_default_context(cafile=os.environ["MZ_CA"])

_plain_init = aiodns.DNSResolver.__init__


def _init(self, *args, **kwargs):
    kwargs["nameservers"] = [DNS]
    _plain_init(self, *args, **kwargs)


aiodns.DNSResolver.__init__ = _init


class ThroughMailzone(AbstractResolver):
    """Resolves the policy host with mailzone's DNS (A records, following CNAMEs)."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        r = aiodns.DNSResolver()
        name = host
        for _ in range(5):
            try:
                answers = await r.query(name, "A")
                return [{"hostname": host, "host": a.host, "port": HTTPS_PORT,
                         "family": socket.AF_INET, "proto": 0, "flags": 0} for a in answers]
            except aiodns.error.DNSError:
                cname = await r.query(name, "CNAME")
                name = cname.cname
        raise OSError(f"{host} does not resolve through mailzone")

    async def close(self):
        pass


_PlainSession = aiohttp.ClientSession


class Session(_PlainSession):
    def __init__(self, *args, **kwargs):
        kwargs["connector"] = aiohttp.TCPConnector(resolver=ThroughMailzone(), ssl=CONTEXT)
        kwargs.pop("loop", None)
        super().__init__(*args, **kwargs)


sts.aiohttp.ClientSession = Session


async def main(domain):
    resolver = sts.STSResolver(loop=asyncio.get_running_loop(), timeout=10)
    status, found = await resolver.resolve(domain)
    out = {"result": status.name}
    if found is not None:
        out["id"], out["policy"] = found[0], found[1]
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
