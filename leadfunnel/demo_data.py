"""The demo's reference data: its team, lead sources, people, companies, pages, campaigns,
and how contacts move and act at each stage. Fictional throughout (companies on .example)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from contacts.models import Contact, Event, LeadSource, StageChange
from contacts.roles import MARKETING, SALES, SALES_MANAGER

Stage = Contact.Stage
Cause = StageChange.Cause
Outcome = StageChange.Outcome
EventType = Event.Type


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    group: str | None
    role: str
    home: str
    admin: bool = False


DEMO_USERS = (
    DemoUser("admin", "", "", None, "administrator", "/admin/", admin=True),
    DemoUser("claire", "Claire", "Martin", MARKETING, "marketer", "/"),
    DemoUser("hugo", "Hugo", "Bernard", SALES, "sales rep", "/queue/"),
    DemoUser("lea", "Léa", "Dubois", SALES, "sales rep", "/queue/"),
    DemoUser("nadia", "Nadia", "Lefèvre", SALES_MANAGER, "sales manager", "/queue/team/"),
)
SALES_REPS = ("hugo", "lea")
# The sales team: its manager sees and reassigns its reps' leads (contacts.access).
DEMO_TEAM = "Ventes France"
DEMO_TEAM_MEMBERS = ("hugo", "lea", "nadia")


@dataclass(frozen=True)
class DemoSource:
    slug: str
    name: str
    channel: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    weight: int


Channel = LeadSource.Channel
SOURCES = (
    DemoSource(
        "google-ads-brand", "Google Ads – brand", Channel.PAID, "google", "cpc", "brand", 20
    ),
    DemoSource(
        "linkedin-ads", "LinkedIn Ads", Channel.SOCIAL, "linkedin", "paid-social", "scoring-b2b", 12
    ),
    DemoSource("organic-search", "Organic search", Channel.ORGANIC, "google", "organic", "", 28),
    DemoSource(
        "newsletter-partner",
        "Newsletter partner",
        Channel.PARTNER,
        "growth-hebdo",
        "email",
        "sponsoring",
        8,
    ),
    DemoSource(
        "salon-vivatech", "Salon Vivatech", Channel.EVENT, "vivatech", "event", "salon-2025", 7
    ),
    DemoSource(
        "referral-program", "Referral program", Channel.REFERRAL, "referral", "referral", "", 8
    ),
    DemoSource("direct", "Direct", Channel.DIRECT, "", "", "", 17),
)
SOURCE_SLUGS = [source.slug for source in SOURCES]
# The trade show lasted three days, this long ago: its contacts all arrive then.
SALON_STARTED = timedelta(days=74)
SALON_DAYS = 3

STAGE_SHARES = {
    Stage.SUSPECT: 0.35,
    Stage.LEAD: 0.28,
    Stage.MQL: 0.15,
    Stage.HMQL: 0.08,
    Stage.SQL: 0.05,
    Stage.CLIENT: 0.07,
    Stage.AMBASSADOR: 0.02,
}
# Relative amount of activity: people further down the funnel do more.
STAGE_ACTIVITY = {
    Stage.SUSPECT: 1.0,
    Stage.LEAD: 2.5,
    Stage.MQL: 4.0,
    Stage.HMQL: 6.0,
    Stage.SQL: 8.0,
    Stage.CLIENT: 10.0,
    Stage.AMBASSADOR: 12.0,
}

FIRST_NAMES = (
    "Élodie", "François", "Zoé", "Hélène", "Jérôme", "Çağla", "Noël", "Camille", "Léo", "Inès",
    "Mathéo", "Chloé", "Gaëlle", "Raphaël", "Anaïs", "Benoît", "Céline", "Loïc", "Maëlys",
    "Thibault", "Sébastien", "Aurélie", "Cécile", "Théo", "Manon", "Nicolas", "Julie", "Thomas",
    "Sarah", "Lucas", "Emma", "Agnès", "Stéphane", "Frédéric", "Véronique", "Clément", "Margaux",
    "Aïcha", "Kévin", "Océane", "Mehdi", "Yasmine", "José", "João", "Søren", "Björn", "Małgorzata",
    "Siobhán", "Priya", "Kenji", "Ana", "Renée", "Amélie", "Jean-Luc", "Marie-Ève", "Bérénice",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Lefèvre", "Müller", "Fournier", "Girard", "Lemaître", "Rousseau", "Faure",
    "Mercier", "Brunet", "Chevalier", "Gauthier", "Perrin", "Lambert", "Bonnet", "François",
    "Leroy", "Roux", "Morel", "Garnier", "Dupré", "Bérenger", "Gonçalves", "Núñez", "Yılmaz",
    "Kowalski", "Østergaard", "O'Connor", "Nguyen", "Benali", "Haddad", "García", "Schäfer",
    "Ferrandière", "Lebœuf", "Côté", "Pelletier", "Da Silva", "Van den Berg", "Moreau", "Laurent",
)  # fmt: skip
# Fictional companies on the reserved .example domain: demo contacts can never receive real mail.
COMPANIES = (
    ("Atelier Lumière", "atelier-lumiere.example"),
    ("Boulangeries Dupré", "boulangeries-dupre.example"),
    ("Café Noël", "cafe-noel.example"),
    ("Logistique Bérenger", "logistique-berenger.example"),
    ("Verrerie de Provence", "verrerie-provence.example"),
    ("Nordlys Software", "nordlys-software.example"),
    ("Helvetia Robotique", "helvetia-robotique.example"),
    ("Maison Côté", "maison-cote.example"),
    ("Optique Mercier", "optique-mercier.example"),
    ("Studio Écume", "studio-ecume.example"),
    ("Transports Faure & Fils", "transports-faure.example"),
    ("Clinique du Lac", "clinique-du-lac.example"),
    ("Agence Péniche", "agence-peniche.example"),
    ("Brasserie Lemaître", "brasserie-lemaitre.example"),
    ("Istanbul Tekstil", "istanbul-tekstil.example"),
    ("Lisboa Digital", "lisboa-digital.example"),
    ("Berliner Datenwerk", "berliner-datenwerk.example"),
    ("Cabinet Roux Avocats", "cabinet-roux.example"),
    ("Fromagerie Chevalier", "fromagerie-chevalier.example"),
    ("Énergies Solaires du Sud", "energies-solaires-sud.example"),
    ("Kyoto Design Lab", "kyoto-design-lab.example"),
    ("Mutuelle Horizon", "mutuelle-horizon.example"),
    ("Garnier Immobilier", "garnier-immobilier.example"),
    ("Les Éditions du Phare", "editions-du-phare.example"),
    ("Pixel & Plume", "pixel-plume.example"),
    ("Coopérative Agricole Bretonne", "coop-bretonne.example"),
    ("Hôtel Bellevue", "hotel-bellevue.example"),
    ("Fintech Alizé", "fintech-alize.example"),
    ("Menuiserie Perrin", "menuiserie-perrin.example"),
    ("Université Populaire Numérique", "upn.example"),
)
JOB_TITLES = (
    "Directrice marketing", "Directeur commercial", "Responsable acquisition", "CMO", "CEO",
    "Fondatrice", "Growth marketer", "Chargée de communication", "Head of Sales",
    "Business developer", "Responsable CRM", "Office manager", "Directeur des opérations",
    "Marketing manager", "Account executive", "Consultant", "Responsable e-commerce",
)  # fmt: skip
# Firmographics, and the fit rules the demo installs (editable in admin: Fit rules).
INDUSTRIES = ("Logiciel", "Commerce", "Industrie", "Services", "Agroalimentaire", "Hôtellerie",
              "Éducation", "Banque et assurance")  # fmt: skip
COUNTRIES = ("France", "France", "France", "Belgique", "Suisse", "Canada", "Côte d’Ivoire")
COMPANY_SIZES = (3, 8, 25, 60, 140, 320, 800, 2500, 12000)
# (name, field, operator, value or values, (from, to), points)
FIT_RULES = (
    ("Décideur", "job_title", "in", "CEO\nCMO\nFondatrice\nHead of Sales", None, 20),
    ("Directeur ou directrice", "job_title", "contains", "direct", None, 15),
    ("PME et ETI", "company_size", "between", "", (50, 5000), 10),
    ("Secteur logiciel", "industry", "equals", "Logiciel", None, 5),
    ("Très petite entreprise", "company_size", "between", "", (None, 9), -10),
)
PHONE_PREFIXES = ("+33 6", "+33 6", "+33 7", "+33 1", "+33 4", "+32 4", "+41 79", "+1 514")

HIGH_INTENT = "high-intent"
PAGES = (
    ("/", "Accueil", "home"),
    ("/pricing", "Tarifs", HIGH_INTENT),
    ("/pricing/enterprise", "Offre Entreprise", HIGH_INTENT),
    ("/demo", "Demander une démo", HIGH_INTENT),
    ("/features/lead-scoring", "Lead scoring", "product"),
    ("/features/nurturing", "Nurturing automatisé", "product"),
    ("/features/sales-queue", "File des commerciaux", "product"),
    ("/blog/lead-scoring-guide", "Le guide du lead scoring B2B", "blog"),
    ("/blog/mql-vs-sql", "MQL, SQL : qui fait quoi ?", "blog"),
    ("/blog/nurturing-emails", "5 e-mails de nurturing qui convertissent", "blog"),
    ("/blog/rgpd-consentement", "RGPD : recueillir le consentement", "blog"),
    ("/blog/salon-follow-up", "Relancer ses contacts après un salon", "blog"),
    ("/case-studies/atelier-lumiere", "Étude de cas : Atelier Lumière", "case-study"),
    ("/case-studies/fintech-alize", "Étude de cas : Fintech Alizé", "case-study"),
    ("/careers", "Carrières", "careers"),
    ("/about", "Qui sommes-nous", "company"),
)
LOW_INTENT_PAGES = tuple(page for page in PAGES if page[2] != HIGH_INTENT)
DOWNLOADS = (
    ("livre-blanc-scoring.pdf", "Livre blanc : le lead scoring"),
    ("guide-nurturing.pdf", "Guide du nurturing"),
    ("checklist-rgpd.pdf", "Checklist RGPD marketing"),
    ("modele-persona.xlsx", "Modèle de persona"),
)
CAMPAIGNS = (
    ("newsletter-scoring", "Le lead scoring en 5 étapes"),
    ("newsletter-salon", "Nos conseils pour votre prochain salon"),
    ("newsletter-rgpd", "Consentement : ce qui change"),
    ("nurturing-welcome", "Bienvenue chez LeadFunnel"),
    ("nurturing-case-study", "Comment Atelier Lumière a doublé ses SQL"),
    ("webinar-invitation", "Webinar : du MQL au client"),
)
LEAD_FORMS = {"contact": 4, "ebook": 3, "newsletter": 2, "webinar": 1}
CONSENT_METHODS = {
    "contact": "Contact form checkbox",
    "ebook": "Ebook form checkbox",
    "newsletter": "Newsletter signup form",
    "webinar": "Webinar registration checkbox",
    "badge-scan": "Badge scan at Salon Vivatech",
}
PLANS = (("LeadFunnel Starter (annual)", 490), ("LeadFunnel Pro (annual)", 1490))
ADD_ONS = (("Extra seats ×5", 600), ("Onboarding package", 900), ("LeadFunnel Pro (upgrade)", 1000))

# What a contact does once known, by the stage they end in. Purchases, referrals and reviews
# are placed after the move that makes them possible.
ACTIVITY_TYPES = (
    EventType.PAGE_VIEW,
    EventType.EMAIL_OPEN,
    EventType.EMAIL_CLICK,
    EventType.DOWNLOAD,
    EventType.FORM_SUBMIT,
    EventType.PURCHASE,
    EventType.REFERRAL,
    EventType.REVIEW,
)
ACTIVITY_WEIGHTS = {
    Stage.LEAD: (50, 25, 6, 5, 3, 0, 0, 0),
    Stage.MQL: (50, 22, 10, 8, 4, 0, 0, 0),
    Stage.HMQL: (50, 22, 12, 8, 4, 0, 0, 0),
    Stage.SQL: (55, 20, 12, 6, 4, 0, 0, 0),
    Stage.CLIENT: (45, 25, 12, 4, 2, 2, 0, 0),
    Stage.AMBASSADOR: (40, 25, 12, 4, 2, 2, 1, 1),
}

# Typical days before each move: marketing stages go by in days, signing takes weeks.
TYPICAL_DAYS = {
    (Stage.LEAD, Stage.MQL): 10,
    (Stage.MQL, Stage.HMQL): 12,
    (Stage.HMQL, Stage.SQL): 7,
    (Stage.SQL, Stage.CLIENT): 21,
    (Stage.CLIENT, Stage.AMBASSADOR): 35,
    (Stage.MQL, Stage.LEAD): 40,
    (Stage.HMQL, Stage.MQL): 30,
    (Stage.SQL, Stage.LEAD): 14,
}

# How each move is recorded: cause, the threshold's name, reasons. Cause "user" moves are
# made by the contact's sales rep.
MOVES: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    (Stage.SUSPECT, Stage.LEAD): (Cause.SYSTEM, "", ("Left an email on a form",)),
    (Stage.LEAD, Stage.MQL): (
        Cause.THRESHOLD,
        "Threshold: MQL at 20 points",
        ("Score reached 20 points",),
    ),
    (Stage.MQL, Stage.HMQL): (
        Cause.THRESHOLD,
        "Threshold: HMQL on high-intent content",
        ("Viewed the pricing page",),
    ),
    (Stage.HMQL, Stage.SQL): (
        Cause.THRESHOLD,
        "Threshold: SQL on demo request or 60 points",
        ("Requested a demo",),
    ),
    (Stage.SQL, Stage.CLIENT): (
        Cause.USER,
        "",
        ("Signed the annual plan", "Signed after the trial", "Signed after a second demo"),
    ),
    (Stage.CLIENT, Stage.AMBASSADOR): (
        Cause.USER,
        "",
        ("Referred a new customer", "Left a 5-star review"),
    ),
    (Stage.MQL, Stage.LEAD): (
        Cause.THRESHOLD,
        "Threshold: MQL at 20 points",
        ("Score fell below 20 points after weeks without activity",),
    ),
    (Stage.HMQL, Stage.MQL): (
        Cause.THRESHOLD,
        "Threshold: HMQL on high-intent content",
        ("No high-intent activity for 30 days",),
    ),
}
LOST_REASONS = {
    Outcome.LOST: ("Chose a competitor", "No budget this year", "Went silent after the demo"),
    Outcome.RECYCLED: ("Not ready yet: back to nurturing", "Project postponed to next quarter"),
    Outcome.DISQUALIFIED: ("Not a fit: freelancer, no team", "Student project"),
}
