#!/usr/bin/env python3
"""Writes N mail-style zones and a dnsperf query file with a realistic mix.

usage: gen_zones.py ZONES_DIR QUERY_FILE N [QUERIES]
Mix: MX, TXT (SPF, DMARC, DKIM), SRV, A; ~10% NXDOMAIN; ~5% names outside every zone.
"""
import os
import random
import sys

TEMPLATE = """$ORIGIN {z}.
$TTL 3600
@ SOA ns1.{z}. hostmaster.{z}. 2026112301 3600 900 1209600 300
@ NS ns1
@ NS ns2
@ A 192.0.2.10
@ MX 10 mx1
@ MX 20 mx2
@ TXT "v=spf1 mx include:_spf.mail.example.net -all"
ns1 A 192.0.2.1
ns2 A 192.0.2.2
mx1 A 192.0.2.25
mx1 AAAA 2001:db8::25
mx2 A 192.0.2.26
mail A 192.0.2.30
www CNAME @
autoconfig CNAME mail
_dmarc TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@{z}"
_submission._tcp SRV 0 1 587 mail
_imaps._tcp SRV 0 1 993 mail
_autodiscover._tcp SRV 0 1 443 mail
mail._domainkey TXT "v=DKIM1; k=rsa; " "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx3mCZ4nW+sLx0e1y0uL7GAcTbq2kSTKpWm4o2ENXfu6y5K3Q0k9R3h4ZrYF6VQn5hE1sZ8xg2u7nB3nVq7yB7tCUxm0FqY0Jc9V8cYhGfVtqYbM4nNnHh8B9o+3lPZ2g0V0rK6uT4b2ePzL3q5YwzK9o8gH0m1xVQ2RkYtqQy2"
"""

POSITIVE = [
    ("@", "MX"), ("@", "TXT"), ("_dmarc", "TXT"), ("mail._domainkey", "TXT"),
    ("_submission._tcp", "SRV"), ("_imaps._tcp", "SRV"), ("_autodiscover._tcp", "SRV"),
    ("mail", "A"), ("mx1", "AAAA"), ("@", "A"), ("www", "A"), ("autoconfig", "A"),
]


def main():
    zones_dir, query_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 200_000
    os.makedirs(zones_dir, exist_ok=True)
    names = ["mail-domain-%05d.test" % i for i in range(n)]
    for z in names:
        with open(os.path.join(zones_dir, z + ".zone"), "w") as f:
            f.write(TEMPLATE.format(z=z))
    rnd = random.Random(42)
    with open(query_file, "w") as f:
        for _ in range(count):
            z = rnd.choice(names)
            r = rnd.random()
            if r < 0.10:
                f.write("nx%d.%s. A\n" % (rnd.randrange(10**6), z))
            elif r < 0.15:
                f.write("www.outside-%d.example. A\n" % rnd.randrange(1000))
            else:
                label, qtype = rnd.choice(POSITIVE)
                name = z + "." if label == "@" else "%s.%s." % (label, z)
                f.write("%s %s\n" % (name, qtype))


if __name__ == "__main__":
    main()
