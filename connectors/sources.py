"""One connector per source. Declarations only: the transports do the reading."""

from __future__ import annotations

from connectors.filedrop import FileDropConnector
from connectors.rest import PageNumberPaginator, Paginator, RestConnector
from connectors.sandbox.vocabulary import TAX_FIELDS
from connectors.sql import SqlConnector


class PoliceIdCards(RestConnector):
    """公安 resident identity cards: cursor pages, API key."""

    name = "police_id_card"
    path = "/v1/persons"
    subject_path = "/v1/persons/by-subject"
    subject_name_field = "name"


class PoliceHukou(RestConnector):
    """公安 household registration entries: cursor pages, API key."""

    name = "police_hukou"
    path = "/v1/households"
    subject_path = "/v1/households/by-subject"
    subject_name_field = "name"


class HealthBirths(RestConnector):
    """卫健 birth medical certificates, keyed by the mother's ID."""

    name = "health_births"
    path = "/v1/births"
    subject_path = "/v1/births/by-subject"


class TaxCertificates(RestConnector):
    """税务 tax payment certificates: page/size pages, bearer key, pinyin field names."""

    name = "tax_certificates"
    path = "/api/wszm"
    subject_path = "/api/wszm/by-subject"
    subject_key = TAX_FIELDS["subject_id"]
    field_map = {source: contract for contract, source in TAX_FIELDS.items()}

    def paginator(self) -> Paginator:
        return PageNumberPaginator(since_param="gxsj_start")

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return {"Authorization": f"Bearer {key}"}


class MarketLicences(SqlConnector):
    """市场监管 business licences, keyed by credit code."""

    name = "market_licences"
    table = "business_licence"


class CivilMarriages(SqlConnector):
    """民政 marriage registrations, one row per spouse."""

    name = "civil_marriages"
    table = "marriage_registration"


class NatresTitles(SqlConnector):
    """自然资源 real estate titles."""

    name = "natres_titles"
    table = "property_title"


class HrssSocialInsurance(FileDropConnector):
    """人社 social insurance records: GBK CSV and XLSX exports."""

    name = "hrss_social_insurance"


class MedinsEnrolments(FileDropConnector):
    """医保 enrolments: CSV and XLSX exports."""

    name = "medins_enrolments"
