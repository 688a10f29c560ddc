#!/usr/bin/env python3
"""Writes examples/inventory.csv, the example site's machines.

Deterministic (fixed seed), so rerunning it reproduces the committed file:
    python3 examples/gen_inventory.py > examples/inventory.csv
"""
import csv
import random
import sys

rng = random.Random(2003)

COLUMNS = [
    "name", "domain", "os.name", "os.type", "os.version", "os.servicePack",
    "architecture", "site", "installed.product", "hardware.memoryMB",
    "hardware.diskFreeMB", "ip.address", "ip.subnet", "lastHeartbeat",
    "properties.department", "properties.role",
]

XP = ("Microsoft Windows XP Professional", "5.1.2600")
XP64 = ("Microsoft Windows XP Professional x64 Edition", "5.2.3790")
W2K = ("Microsoft Windows 2000 Professional", "5.0.2195")
W2K_SRV = ("Microsoft Windows 2000 Server", "5.0.2195")
W2K3 = ("Microsoft Windows Server 2003, Standard Edition", "5.2.3790")
W2K3_ENT = ("Microsoft Windows Server 2003, Enterprise Edition", "5.2.3790")

OFFICE_2003_PRO = "Microsoft Office Professional Edition 2003"
OFFICE_2003_STD = "Microsoft Office Standard Edition 2003"
OFFICE_XP = "Microsoft Office XP Professional"
EXTRAS = ["Adobe Reader 7.0", "Microsoft .NET Framework 1.1", "Windows Media Player 10"]
DEPARTMENTS = ["Finance", "Sales", "Engineering", "HR", "IT", "Operations"]

rows = []


def heartbeat():
    day = rng.randint(18, 23)
    return f"2026-11-{day:02d}T{rng.randint(6, 20):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


def add(name, os_, os_type, sp, arch, net, host, products, memory, disk, department="", role="",
        extra_net=None):
    """`net` is the second octet (1 = HQ, 2 = branch) and the third."""
    addresses = [f"10.{net[0]}.{net[1]}.{host}"]
    subnets = [f"10.{net[0]}.{net[1]}.0"]
    if extra_net:
        addresses.append(f"10.{extra_net[0]}.{extra_net[1]}.{host}")
        subnets.append(f"10.{extra_net[0]}.{extra_net[1]}.0")
    rows.append({
        "name": name, "domain": "CORP", "os.name": os_[0], "os.type": os_type,
        "os.version": os_[1], "os.servicePack": sp, "architecture": arch, "site": "LAB",
        "installed.product": ";".join(products), "hardware.memoryMB": memory,
        "hardware.diskFreeMB": disk, "ip.address": ";".join(addresses),
        "ip.subnet": ";".join(subnets),
        # A few machines were discovered but never reported.
        "lastHeartbeat": heartbeat() if rng.random() > 0.02 else "",
        "properties.department": department, "properties.role": role,
    })


add("sms01", W2K3, "server", 1, "x86", (1, 0), 10,
    ["Microsoft Systems Management Server 2003", "Microsoft SQL Server 2000"],
    2048, 61440, "IT", "siteServer")
add("dc01", W2K3, "domainController", 1, "x86", (1, 0), 2, [], 1024, 20480, "IT", "domainController")
add("dc02", W2K3, "domainController", 1, "x86", (2, 0), 2, [], 1024, 20480, "IT", "domainController")

for i in range(1, 13):
    os_, sp = rng.choice([(W2K3, 1), (W2K3, 0), (W2K3_ENT, 1), (W2K_SRV, 4)])
    dual = (1, 200) if i <= 2 else None
    add(f"srv-hq-{i:02d}", os_, "server", sp, "x86", (1, 0), 20 + i, [],
        rng.choice([1024, 2048, 4096]), rng.randint(8, 200) * 1024, "IT",
        rng.choice(["file", "print", "database", "web", "mail"]), extra_net=dual)
add("srv-hq-itanium", W2K3_ENT, "server", 1, "ia64", (1, 0), 40, [], 16384, 409600, "IT", "database")
for i in range(1, 5):
    os_, sp = rng.choice([(W2K3, 1), (W2K_SRV, 4)])
    add(f"srv-br-{i:02d}", os_, "server", sp, "x86", (2, 0), 20 + i, [],
        rng.choice([1024, 2048]), rng.randint(8, 100) * 1024, "IT", rng.choice(["file", "print"]))

# Pre-production clients: current XP with Office, as production will be.
add("wks-test-01", XP, "workstation", 2, "x86", (1, 9), 11, [OFFICE_2003_PRO] + EXTRAS[:2],
    512, 20480, "IT", "preProduction")
add("wks-test-02", XP, "workstation", 2, "x86", (2, 9), 12, [OFFICE_2003_STD, EXTRAS[0]],
    512, 20480, "IT", "preProduction")


def workstation(name, net_major, index):
    os_, sp, arch = rng.choices(
        [(XP, 2, "x86"), (XP, 1, "x86"), (W2K, 4, "x86"), (XP64, 1, "x64")],
        weights=[60, 18, 20, 2])[0]
    office = rng.choices([OFFICE_2003_PRO, OFFICE_2003_STD, OFFICE_XP, None],
                         weights=[25, 20, 15, 40])[0]
    products = ([office] if office else []) + [p for p in EXTRAS if rng.random() < 0.5]
    memory = rng.choice([128, 256, 256, 512, 512, 512, 1024]) if os_ is W2K else \
        rng.choice([256, 512, 512, 1024, 2048])
    third = 10 + index // 50
    add(name, os_, "workstation", sp, arch, (net_major, third), 10 + index % 50, products,
        memory, rng.randint(1, 60) * 512, rng.choice(DEPARTMENTS))


for i in range(1, 181):
    workstation(f"wks-hq-{i:03d}", 1, i)
for i in range(1, 101):
    workstation(f"wks-br-{i:03d}", 2, i)

out = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
out.writeheader()
out.writerows(rows)
