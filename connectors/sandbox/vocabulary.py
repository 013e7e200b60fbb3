"""The departmental systems' own vocabularies, which their connectors map to the contracts' fields.

A module of its own, cheap to import: the connectors need these names, not the generator (Faker).
"""

#: The tax system's own field names (pinyin abbreviations); the tax connector maps them back.
TAX_FIELDS = {
    "record_id": "wszmxh",
    "subject_id": "nsrsbh",
    "taxpayer_name": "nsrmc",
    "tax_type": "zsxm",
    "amount": "se",
    "period_start": "skssqq",
    "period_end": "skssqz",
    "certificate_no": "wszmh",
    "issued_at": "kjrq",
    "valid_until": "yxqz",
    "updated_at": "gxsj",
}
