"""Terminology for the demo population: real LOINC, SNOMED CT, ICD-10-CM, CVX, RxNorm,
UCUM and CPT codes, with plausible reference ranges. Tables only, no logic."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split("|") if "|" in text else text.split())


LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CVX = "http://hl7.org/fhir/sid/cvx"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
NPI = "http://hl7.org/fhir/sid/us-npi"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

MALE_NAMES = _words(
    "James Robert John Michael David William Richard Joseph Thomas Charles Daniel "
    "Matthew Anthony Mark Steven Paul Andrew Joshua Kevin Brian George Edward Ryan "
    "Jacob Nicholas Eric Jonathan Samuel Benjamin Noah Liam Ethan Lucas Mateo Omar "
    "Wei Hiroshi Rahul Diego"
)
FEMALE_NAMES = _words(
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa "
    "Nancy Sandra Ashley Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie "
    "Rebecca Laura Olivia Emma Ava Sophia Isabella Mia Amelia Fatima Mei Yuki Priya "
    "Lucia Ana Chloe"
)
FAMILY_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
    "Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee "
    "Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young "
    "Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
    "Rivera Campbell Mitchell Carter Roberts Chen Patel Kim Okafor Cohen Schmidt "
    "Rossi Novak Kowalski"
)
STREETS = _words(
    "Main St|Oak Ave|Maple Dr|Cedar Ln|Elm St|Pine St|Washington Ave|Lake Rd|Hill St|"
    "Park Ave|River Rd|Sunset Blvd|Church St|Highland Ave|Meadow Ln"
)
CITIES = (
    ("Springfield", "MA", "01103"),
    ("Worcester", "MA", "01608"),
    ("Boston", "MA", "02118"),
    ("Cambridge", "MA", "02139"),
    ("Lowell", "MA", "01852"),
    ("Providence", "RI", "02903"),
    ("Hartford", "CT", "06103"),
    ("Manchester", "NH", "03101"),
)

# (code, display, ucum, low, high, decimals, normal low, normal high); weight, height,
# BMI and head circumference take their values from the patient's growth (demo.growth)
VITALS = {
    "heart-rate": ("8867-4", "Heart rate", "/min", 55, 105, 0, 60, 100),
    "resp-rate": ("9279-1", "Respiratory rate", "/min", 12, 22, 0, 12, 20),
    "temperature": ("8310-5", "Body temperature", "Cel", 36.1, 37.9, 1, 36.1, 37.2),
    "oxygen": ("2708-6", "Oxygen saturation in Arterial blood", "%", 92, 100, 0, 95, 100),
    "weight": ("29463-7", "Body weight", "kg", 50, 110, 1, None, None),
    "height": ("8302-2", "Body height", "cm", 150, 195, 1, None, None),
    "bmi": ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18, 35, 1, 18.5, 25),
    "head": ("9843-4", "Head Occipital-frontal circumference", "cm", 32, 52, 1, None, None),
}
HEAD_CIRCUMFERENCE_TAPE = ("8287-5", "Head Occipital-frontal circumference by Tape measure")
"""A second coding of head circumference, the one the SMART growth chart app asks for."""
# (below this age in years, low, high): children's heart and breathing rates
CHILD_HEART_RATE = ((1, 100, 160), (3, 90, 140), (6, 80, 120), (12, 70, 110))
CHILD_RESP_RATE = ((1, 30, 55), (3, 24, 40), (6, 22, 34), (12, 18, 30))
BLOOD_PRESSURE = ("85354-9", "Blood pressure panel with all children optional")
BLOOD_PRESSURE_PANEL = ("55284-4", "Blood pressure systolic and diastolic")
"""A second coding of every blood pressure, the panel code older SMART apps ask for."""
SYSTOLIC = ("8480-6", "Systolic blood pressure", 100, 160, 90, 120)
DIASTOLIC = ("8462-4", "Diastolic blood pressure", 60, 100, 60, 80)
CHILD_SYSTOLIC = ("8480-6", "Systolic blood pressure", 86, 118, 90, 110)
CHILD_DIASTOLIC = ("8462-4", "Diastolic blood pressure", 48, 76, 50, 70)

# panel code, display, [(code, display, ucum, low, high, decimals, normal low, normal high)]
LAB_PANELS = (
    (
        "51990-0",
        "Basic metabolic panel - Blood",
        (
            ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 160, 0, 70, 99),
            ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 6, 28, 0, 7, 20),
            (
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                "mg/dL",
                0.5,
                1.6,
                2,
                0.6,
                1.3,
            ),
            ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 132, 147, 0, 135, 145),
            (
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                "mmol/L",
                3.3,
                5.4,
                1,
                3.5,
                5.1,
            ),
            (
                "17861-6",
                "Calcium [Mass/volume] in Serum or Plasma",
                "mg/dL",
                8.2,
                10.8,
                1,
                8.6,
                10.3,
            ),
        ),
    ),
    (
        "58410-2",
        "CBC panel - Blood by Automated count",
        (
            (
                "6690-2",
                "Leukocytes [#/volume] in Blood by Automated count",
                "10*3/uL",
                3.5,
                12,
                1,
                4.5,
                11,
            ),
            (
                "789-8",
                "Erythrocytes [#/volume] in Blood by Automated count",
                "10*6/uL",
                3.9,
                6,
                2,
                4.2,
                5.9,
            ),
            ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11, 18, 1, 12, 17.5),
            (
                "4544-3",
                "Hematocrit [Volume Fraction] of Blood by Automated count",
                "%",
                34,
                52,
                1,
                36,
                50,
            ),
            (
                "777-3",
                "Platelets [#/volume] in Blood by Automated count",
                "10*3/uL",
                140,
                420,
                0,
                150,
                400,
            ),
        ),
    ),
    (
        "57698-3",
        "Lipid panel with direct LDL - Serum or Plasma",
        (
            (
                "2093-3",
                "Cholesterol [Mass/volume] in Serum or Plasma",
                "mg/dL",
                140,
                280,
                0,
                None,
                200,
            ),
            (
                "2571-8",
                "Triglyceride [Mass/volume] in Serum or Plasma",
                "mg/dL",
                60,
                260,
                0,
                None,
                150,
            ),
            (
                "2085-9",
                "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
                "mg/dL",
                30,
                85,
                0,
                40,
                None,
            ),
            (
                "18262-6",
                "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
                "mg/dL",
                60,
                190,
                0,
                None,
                100,
            ),
        ),
    ),
    (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        (("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.6, 9.5, 1, None, 5.7),),
    ),
)

HS_CRP_PANEL = (
    "30522-7",
    "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method",
    (
        (
            "30522-7",
            "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method",
            "mg/L",
            0.2,
            7.5,
            1,
            None,
            3.0,
        ),
    ),
)
"""hs-CRP, drawn with the lipid panel of patients whose cardiac risk is assessed."""
CARDIAC_RISK_CONDITIONS = frozenset({"38341003", "44054006", "55822004", "162864005"})
"""Hypertension, type 2 diabetes, hyperlipidemia, obesity (SNOMED)."""

# SNOMED code, display, ICD-10-CM code, chronic
CONDITIONS = (
    ("38341003", "Hypertensive disorder, systemic arterial", "I10", True),
    ("44054006", "Diabetes mellitus type 2", "E11.9", True),
    ("55822004", "Hyperlipidemia", "E78.5", True),
    ("195967001", "Asthma", "J45.909", True),
    ("35489007", "Depressive disorder", "F32.9", True),
    ("197480006", "Anxiety disorder", "F41.9", True),
    ("396275006", "Osteoarthritis", "M19.90", True),
    ("40055000", "Chronic sinusitis", "J32.9", True),
    ("444814009", "Viral sinusitis", "J01.90", False),
    ("10509002", "Acute bronchitis", "J20.9", False),
    ("68566005", "Urinary tract infectious disease", "N39.0", False),
    ("43878008", "Streptococcal sore throat", "J02.0", False),
    ("65363002", "Otitis media", "H66.90", False),
    ("162864005", "Body mass index 30+ - obesity", "E66.9", True),
    ("73430006", "Sleep apnea", "G47.30", True),
    ("230690007", "Cerebrovascular accident", "I63.9", False),
)

# code system, code, display, category, criticality
ALLERGIES = (
    (RXNORM, "7980", "Penicillin G", "medication", "high"),
    (RXNORM, "10831", "Sulfamethoxazole / Trimethoprim", "medication", "low"),
    (RXNORM, "1191", "Aspirin", "medication", "low"),
    (SNOMED, "91935009", "Allergy to peanuts", "food", "high"),
    (SNOMED, "300913006", "Shellfish allergy", "food", "high"),
    (SNOMED, "418689008", "Allergy to grass pollen", "environment", "low"),
    (SNOMED, "232350006", "House dust mite allergy", "environment", "low"),
    (SNOMED, "419474003", "Allergy to mould", "environment", "low"),
)
REACTIONS = (
    ("271807003", "Eruption of skin"),
    ("247472004", "Wheal"),
    ("39579001", "Anaphylaxis"),
    ("49727002", "Cough"),
    ("267036007", "Dyspnea"),
    ("422587007", "Nausea"),
)

# CVX code, display, for children only
VACCINES = (
    ("140", "Influenza, seasonal, injectable, preservative free", False),
    (
        "208",
        "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free,"
        " 30 mcg/0.3mL dose",
        False,
    ),
    ("115", "Tdap", False),
    ("133", "Pneumococcal conjugate PCV 13", False),
    ("121", "Zoster vaccine, live", False),
    ("43", "Hepatitis B vaccine, adult dosage", False),
    ("08", "Hepatitis B vaccine, pediatric or pediatric/adolescent dosage", True),
    ("20", "DTaP", True),
    ("03", "MMR", True),
    ("21", "Varicella", True),
    ("10", "IPV", True),
    ("83", "Hepatitis A vaccine, pediatric/adolescent dosage, 2 dose", True),
)

# RxNorm code, display, sig, quantity, days supply, for condition (SNOMED) or None
MEDICATIONS = (
    (
        "314076",
        "lisinopril 10 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        30,
        30,
        "38341003",
    ),
    (
        "197361",
        "amlodipine 5 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        30,
        30,
        "38341003",
    ),
    (
        "860975",
        "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "Take 1 tablet by mouth with evening meal",
        30,
        30,
        "44054006",
    ),
    (
        "617310",
        "atorvastatin 20 MG Oral Tablet",
        "Take 1 tablet by mouth at bedtime",
        30,
        30,
        "55822004",
    ),
    (
        "745679",
        "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "Inhale 2 puffs every 4 to 6 hours as needed",
        1,
        30,
        "195967001",
    ),
    (
        "312938",
        "sertraline 50 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        30,
        30,
        "35489007",
    ),
    (
        "310798",
        "hydrochlorothiazide 25 MG Oral Tablet",
        "Take 1 tablet by mouth every morning",
        30,
        30,
        "38341003",
    ),
    (
        "308182",
        "amoxicillin 250 MG Oral Capsule",
        "Take 1 capsule by mouth three times daily for 10 days",
        30,
        10,
        "43878008",
    ),
    (
        "197696",
        "72 HR fentanyl 0.025 MG/HR Transdermal System",
        "Apply 1 patch every 72 hours",
        10,
        30,
        None,
    ),
    (
        "198211",
        "simvastatin 40 MG Oral Tablet",
        "Take 1 tablet by mouth at bedtime",
        30,
        30,
        "55822004",
    ),
    (
        "310965",
        "ibuprofen 200 MG Oral Tablet",
        "Take 1 tablet by mouth every 6 hours as needed for pain",
        60,
        15,
        "396275006",
    ),
    (
        "966571",
        "levothyroxine sodium 0.1 MG Oral Tablet",
        "Take 1 tablet by mouth every morning",
        30,
        30,
        None,
    ),
)

# CPT code, display, price in USD
VISIT_CHARGES = (
    ("99213", "Office or other outpatient visit, established patient, low complexity", "110.00"),
    (
        "99214",
        "Office or other outpatient visit, established patient, moderate complexity",
        "165.00",
    ),
    ("99395", "Periodic preventive medicine, established patient, 18-39 years", "210.00"),
)
LAB_CHARGES = {
    "51990-0": ("80048", "Basic metabolic panel", "38.50"),
    "58410-2": ("85025", "Complete blood count with automated differential", "27.00"),
    "57698-3": ("80061", "Lipid panel", "45.00"),
    "4548-4": ("83036", "Hemoglobin A1c", "31.00"),
    "30522-7": ("86141", "C-reactive protein; high sensitivity (hsCRP)", "21.00"),
}

# SNOMED specialty code, display, practitioner role title
SPECIALTIES = (
    ("394814009", "General practice", "Family physician"),
    ("419192003", "Internal medicine", "Internist"),
    ("394537008", "Pediatric specialty", "Pediatrician"),
    ("394579002", "Cardiology", "Cardiologist"),
)
VISIT_REASONS = (
    ("185349003", "Encounter for check up"),
    ("390906007", "Follow-up encounter"),
    ("185345009", "Encounter for symptom"),
    ("410620009", "Well child visit"),
)
MESSAGE_TOPICS = (
    (
        "Question about my lab results",
        "Hello, I saw my new lab results in the portal. Is there anything I should worry about?",
        "Your results look fine overall. We will go over them together at your next visit.",
        "Thank you, see you then.",
    ),
    (
        "Prescription refill",
        "Could you please renew my prescription? I have two days of tablets left.",
        "The refill has been sent to your pharmacy; it should be ready tomorrow.",
        None,
    ),
    (
        "Side effects",
        "Since I started the new medication I feel a bit dizzy in the morning.",
        "Please take it in the evening instead and let us know if it continues.",
        "Will do, thanks.",
    ),
    (
        "Appointment change",
        "I cannot make it to my appointment. Are there other times next week?",
        "There are free slots on Tuesday and Thursday morning; you can book them in the portal.",
        "Booked Thursday, thank you.",
    ),
)
NOTE_PHRASES = (
    "Patient reports feeling well overall.",
    "Patient reports intermittent headaches over the past two weeks.",
    "Sleep and appetite are normal.",
    "Medication adherence reviewed; no missed doses reported.",
    "Discussed diet, exercise and weight management.",
    "Lungs clear to auscultation bilaterally. Heart regular rate and rhythm.",
    "No acute distress. Abdomen soft, non-tender.",
    "Follow up in three months, sooner if symptoms worsen.",
    "Labs ordered; results will be shared through the patient portal.",
)
