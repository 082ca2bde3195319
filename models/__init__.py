"""SQLAlchemy 2 typed models, query functions and Alembic migrations.

Importing this package registers every table on `Base.metadata` (Alembic's target).
"""

from models.base import Base
from models.broadcasts import Broadcast, BroadcastOptOut, Delivery
from models.console import ConsoleUser, ReplyTemplateVersion
from models.donations import BloodUse, Donation, Donor
from models.donor_extras import EmergencyConsent
from models.invites import Invite
from models.messaging import OutboundMessage, TemplateSendEvent
from models.people import AuditEntry, Liaison, Site
from models.plans import JurisdictionRow, Plan, PlanLine, Unit, UnitAlias
from models.users import Binding, SubscriberDaily

__all__ = [
    "AuditEntry",
    "Base",
    "Binding",
    "BloodUse",
    "Broadcast",
    "BroadcastOptOut",
    "ConsoleUser",
    "Delivery",
    "Donation",
    "Donor",
    "EmergencyConsent",
    "Invite",
    "JurisdictionRow",
    "Liaison",
    "OutboundMessage",
    "Plan",
    "PlanLine",
    "ReplyTemplateVersion",
    "Site",
    "SubscriberDaily",
    "TemplateSendEvent",
    "Unit",
    "UnitAlias",
]
