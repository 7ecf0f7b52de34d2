#!/usr/bin/python3
"""Verify the DKIM signatures of a message with dkimpy (an implementation that is not ours),
fetching keys from a given DNS server (mailzone under test).

usage: dkim_verify.py SERVER PORT < message
Prints one line per signature, "pass" or "fail", and exits 0 only if every signature passes.
"""
import sys

import dkim
import dns.message
import dns.query
import dns.rdatatype

server, port = sys.argv[1], int(sys.argv[2])


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    query = dns.message.make_query(name, dns.rdatatype.TXT, use_edns=0, payload=1232)
    answer = dns.query.udp(query, server, port=port, timeout=timeout)
    if answer.flags & dns.flags.TC:
        answer = dns.query.tcp(query, server, port=port, timeout=timeout)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            for rdata in rrset:
                return b"".join(rdata.strings)
    return None


message = sys.stdin.buffer.read()
d = dkim.DKIM(message)
count = message.lower().count(b"\ndkim-signature:") + (1 if message.lower().startswith(b"dkim-signature:") else 0)
ok = count > 0
for i in range(count):
    try:
        good = d.verify(idx=i, dnsfunc=dnsfunc)
    except Exception as e:  # noqa: BLE001 - report any verifier error as a failure
        print("fail", repr(e))
        ok = False
        continue
    print("pass" if good else "fail")
    ok = ok and good
sys.exit(0 if ok else 1)
