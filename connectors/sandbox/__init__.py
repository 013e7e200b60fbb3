"""The sandbox: the departmental systems the hub pulls from, generated and run on this machine.

``generate`` builds one consistent synthetic population (Faker zh_CN names, valid GB 11643 IDs and
GB 32100 credit codes, households, marriages, births, companies) and writes every system's data with
seeded defects at a known rate, recorded in a ground-truth manifest. ``control`` starts the REST systems
as real processes on loopback ports and stops them; ``server`` is one such process.
"""
