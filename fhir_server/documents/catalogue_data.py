"""The starter catalogue of patient education (issue 20, "Education"): short texts in
this project's own words, each with a link to the public MedlinePlus page on the topic
(https://medlineplus.gov/, U.S. National Library of Medicine), and the codes each covers:
SNOMED CT and ICD-10-CM for conditions (an ICD-10-CM code covers its subcodes: ``E11``
covers ``E11.9``), RxNorm for medicines (ingredient and the clinical drugs of the demo
data).

Loaded into every new store by :func:`fhir_server.documents.catalogue.load_catalogue`
as DocumentReferences ``education-<key>``; staff edit them through the API like any
resource.
"""

from __future__ import annotations

from typing import NamedTuple

MEDLINEPLUS = "https://medlineplus.gov/"


class Topic(NamedTuple):
    key: str
    title: str
    text: str
    page: str
    """The MedlinePlus page (below https://medlineplus.gov/)."""
    snomed: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()
    rxnorm: tuple[str, ...] = ()


CONDITIONS: tuple[Topic, ...] = (
    Topic(
        "high-blood-pressure",
        "Living with high blood pressure",
        "High blood pressure strains the heart and blood vessels without causing symptoms."
        " Checking it at home, eating less salt, moving every day and taking your medicine"
        " as prescribed lower the risk of heart attack, stroke and kidney damage.",
        "highbloodpressure.html",
        ("38341003", "59621000"),
        ("I10", "I11", "I12", "I13", "I15", "I16"),
    ),
    Topic(
        "type-2-diabetes",
        "Managing type 2 diabetes",
        "In type 2 diabetes the body does not use insulin well, so blood sugar stays high."
        " Regular meals, activity, weight control, blood sugar checks and yearly eye, foot"
        " and kidney checks help prevent complications.",
        "diabetestype2.html",
        ("44054006",),
        ("E11",),
    ),
    Topic(
        "type-1-diabetes",
        "Living with type 1 diabetes",
        "In type 1 diabetes the pancreas makes little or no insulin. Insulin every day,"
        " counting carbohydrates and knowing the signs of low and high blood sugar keep you"
        " safe.",
        "diabetestype1.html",
        ("46635009",),
        ("E10",),
    ),
    Topic(
        "prediabetes",
        "Prediabetes: turning it around",
        "Prediabetes means blood sugar is higher than normal but not yet diabetes. Losing a"
        " little weight and being active most days can bring it back to normal.",
        "prediabetes.html",
        ("714628002",),
        ("R73.0",),
    ),
    Topic(
        "high-cholesterol",
        "High cholesterol",
        "Too much cholesterol in the blood builds up in the arteries. Food low in saturated"
        " fat, exercise, not smoking and, when prescribed, a statin lower your heart risk.",
        "cholesterol.html",
        ("55822004", "13644009"),
        ("E78",),
    ),
    Topic(
        "asthma",
        "Asthma: control your breathing",
        "Asthma narrows the airways and causes wheezing, cough and shortness of breath. Know"
        " your triggers, use your controller medicine every day and keep your quick-relief"
        " inhaler with you; an asthma action plan tells you what to do when it gets worse.",
        "asthma.html",
        ("195967001",),
        ("J45",),
    ),
    Topic(
        "copd",
        "COPD",
        "Chronic obstructive pulmonary disease makes it hard to breathe out. Stopping"
        " smoking, using inhalers correctly, staying active, vaccines and pulmonary"
        " rehabilitation help you breathe easier.",
        "copd.html",
        ("13645005",),
        ("J44",),
    ),
    Topic(
        "depression",
        "Depression",
        "Depression is more than sadness: it changes sleep, energy, appetite and interest"
        " in life. Talk therapy, medicine or both work for most people; tell someone at once"
        " if you think about harming yourself.",
        "depression.html",
        ("35489007", "370143000"),
        ("F32", "F33"),
    ),
    Topic(
        "anxiety",
        "Anxiety",
        "Anxiety disorders cause worry or fear that is hard to control. Therapy, medicine,"
        " regular exercise and good sleep reduce symptoms.",
        "anxiety.html",
        ("197480006", "21897009"),
        ("F41",),
    ),
    Topic(
        "osteoarthritis",
        "Osteoarthritis",
        "Osteoarthritis wears down the cartilage of the joints, causing pain and stiffness."
        " Gentle exercise, a healthy weight, heat or cold and pain relievers taken as"
        " advised keep you moving.",
        "osteoarthritis.html",
        ("396275006",),
        ("M15", "M16", "M17", "M18", "M19"),
    ),
    Topic(
        "sinusitis",
        "Sinusitis",
        "Sinusitis is swelling of the sinuses that blocks the nose and causes facial"
        " pressure. Most cases are viral and improve with rest, fluids and saline rinses;"
        " long-lasting sinusitis may need a check-up.",
        "sinusitis.html",
        ("40055000", "444814009"),
        ("J01", "J32"),
    ),
    Topic(
        "obesity",
        "Reaching a healthy weight",
        "Obesity raises the risk of diabetes, heart disease and joint problems. Small lasting"
        " changes in eating and activity, support and sometimes medicine help you lose"
        " weight and keep it off.",
        "obesity.html",
        ("414916001", "162864005"),
        ("E66",),
    ),
    Topic(
        "sleep-apnea",
        "Sleep apnea",
        "In sleep apnea breathing stops again and again during sleep, leaving you tired by"
        " day. A CPAP machine, losing weight and avoiding alcohol at night help.",
        "sleepapnea.html",
        ("73430006", "78275009"),
        ("G47.3",),
    ),
    Topic(
        "stroke",
        "After a stroke",
        "A stroke happens when blood flow to part of the brain stops. Rehabilitation,"
        " controlling blood pressure and cholesterol, and taking your medicines lower the"
        " chance of another one; call emergency services for sudden weakness or trouble"
        " speaking.",
        "stroke.html",
        ("230690007",),
        ("I63", "I64", "Z86.73"),
    ),
    Topic(
        "heart-failure",
        "Heart failure",
        "In heart failure the heart does not pump as well as it should. Weigh yourself every"
        " day, limit salt and fluids as advised, and take your medicines to stay out of"
        " hospital.",
        "heartfailure.html",
        ("84114007",),
        ("I50",),
    ),
    Topic(
        "coronary-artery-disease",
        "Coronary artery disease",
        "Narrowed heart arteries can cause chest pain and heart attacks. Not smoking, a heart"
        " healthy diet, exercise and medicines protect your heart.",
        "coronaryarterydisease.html",
        ("53741008",),
        ("I25",),
    ),
    Topic(
        "atrial-fibrillation",
        "Atrial fibrillation",
        "Atrial fibrillation is an irregular heartbeat that raises the risk of stroke. Blood"
        " thinners and medicines that control the heart rate lower that risk.",
        "atrialfibrillation.html",
        ("49436004",),
        ("I48",),
    ),
    Topic(
        "chronic-kidney-disease",
        "Chronic kidney disease",
        "Damaged kidneys filter the blood less well over time. Controlling blood pressure and"
        " blood sugar and avoiding medicines that harm the kidneys slow it down.",
        "chronickidneydisease.html",
        ("709044004", "431855005"),
        ("N18",),
    ),
    Topic(
        "hypothyroidism",
        "Underactive thyroid",
        "When the thyroid makes too little hormone you may feel tired, cold and gain weight."
        " A daily thyroid hormone pill, taken the same way every day, and regular blood"
        " tests keep levels right.",
        "hypothyroidism.html",
        ("40930008",),
        ("E03",),
    ),
    Topic(
        "rheumatoid-arthritis",
        "Rheumatoid arthritis",
        "Rheumatoid arthritis is an immune disease that inflames the joints. Early treatment"
        " with disease-modifying medicines protects the joints.",
        "rheumatoidarthritis.html",
        ("69896004",),
        ("M05", "M06"),
    ),
    Topic(
        "osteoporosis",
        "Osteoporosis",
        "Osteoporosis makes bones thin and easy to break. Calcium, vitamin D, weight-bearing"
        " exercise, preventing falls and medicine keep bones strong.",
        "osteoporosis.html",
        ("64859006",),
        ("M80", "M81"),
    ),
    Topic(
        "migraine",
        "Migraine",
        "Migraines are strong headaches, often with nausea and sensitivity to light. A"
        " headache diary helps find triggers; some medicines stop an attack, others prevent"
        " them.",
        "migraine.html",
        ("37796009",),
        ("G43",),
    ),
    Topic(
        "gerd",
        "Heartburn and GERD",
        "In GERD stomach acid flows back into the food pipe. Smaller meals, not eating before"
        " bed, raising the head of the bed and acid-reducing medicine ease it.",
        "gerd.html",
        ("235595009",),
        ("K21",),
    ),
    Topic(
        "allergic-rhinitis",
        "Hay fever",
        "Allergic rhinitis causes sneezing and a runny, itchy nose. Avoiding what you react"
        " to, nasal sprays and antihistamines bring relief.",
        "hayfever.html",
        ("61582004",),
        ("J30",),
    ),
    Topic(
        "atopic-dermatitis",
        "Eczema",
        "Eczema makes skin dry, itchy and inflamed. Moisturise every day, use mild soap and"
        " treat flares early with the creams your clinician prescribes.",
        "eczema.html",
        ("24079001",),
        ("L20",),
    ),
    Topic(
        "psoriasis",
        "Psoriasis",
        "Psoriasis causes thick, scaly patches of skin. Creams, light therapy and medicines"
        " that calm the immune system control it.",
        "psoriasis.html",
        ("9014002",),
        ("L40",),
    ),
    Topic(
        "back-pain",
        "Low back pain",
        "Most low back pain gets better with time. Staying active, gentle stretching, heat"
        " and good posture help; sudden weakness or numbness needs care at once.",
        "backpain.html",
        ("279039007", "278860009"),
        ("M54.5",),
    ),
    Topic(
        "epilepsy",
        "Epilepsy",
        "Epilepsy causes repeated seizures. Taking seizure medicine every day, sleeping"
        " enough and knowing your triggers lower the number of seizures.",
        "epilepsy.html",
        ("84757009",),
        ("G40",),
    ),
    Topic(
        "alzheimers",
        "Alzheimer's disease",
        "Alzheimer's disease slowly affects memory and thinking. Routines, a safe home,"
        " support for caregivers and planning ahead make daily life easier.",
        "alzheimersdisease.html",
        ("26929004",),
        ("G30",),
    ),
    Topic(
        "parkinsons",
        "Parkinson's disease",
        "Parkinson's disease affects movement, causing tremor, stiffness and slowness."
        " Medicines, exercise and physical therapy help you stay independent.",
        "parkinsonsdisease.html",
        ("49049000",),
        ("G20",),
    ),
    Topic(
        "hepatitis-c",
        "Hepatitis C",
        "Hepatitis C is a virus that harms the liver. Modern tablets cure most people in a"
        " few months; avoid alcohol and ask about liver checks.",
        "hepatitisc.html",
        ("128302006",),
        ("B18.2",),
    ),
    Topic(
        "hiv",
        "Living with HIV",
        "HIV medicines taken every day keep the virus undetectable, protect your health and"
        " prevent passing it on to partners.",
        "hiv.html",
        ("86406008",),
        ("B20", "Z21"),
    ),
    Topic(
        "gout",
        "Gout",
        "Gout is painful swelling of a joint caused by uric acid crystals. Drinking water,"
        " less alcohol and red meat, and medicines that lower uric acid prevent attacks.",
        "gout.html",
        ("90560007",),
        ("M10",),
    ),
    Topic(
        "bipolar",
        "Bipolar disorder",
        "Bipolar disorder brings mood swings between highs and lows. Mood stabilisers,"
        " therapy and regular sleep keep moods steady.",
        "bipolardisorder.html",
        ("13746004",),
        ("F31",),
    ),
    Topic(
        "insomnia",
        "Insomnia",
        "Trouble falling or staying asleep is common. A regular bedtime, a dark quiet room,"
        " less caffeine and screens at night, and therapy for insomnia help.",
        "insomnia.html",
        ("193462001",),
        ("G47.0", "F51.0"),
    ),
    Topic(
        "irritable-bowel",
        "Irritable bowel syndrome",
        "IBS causes cramps, bloating and changes in bowel habits. Finding trigger foods,"
        " fibre, managing stress and medicine ease symptoms.",
        "irritablebowelsyndrome.html",
        ("10743008",),
        ("K58",),
    ),
    Topic(
        "anemia",
        "Anemia",
        "Anemia means too few healthy red blood cells, which makes you tired and short of"
        " breath. The cause decides the treatment, often iron or vitamins.",
        "anemia.html",
        ("271737000",),
        ("D50", "D51", "D52", "D53", "D64"),
    ),
    Topic(
        "glaucoma",
        "Glaucoma",
        "Glaucoma damages the optic nerve, often without early symptoms. Eye drops used"
        " every day and regular eye exams protect your sight.",
        "glaucoma.html",
        ("23986001",),
        ("H40",),
    ),
    Topic(
        "ptsd",
        "Post-traumatic stress disorder",
        "After a frightening event some people keep reliving it. Trauma-focused therapy and"
        " medicine help, and support from others matters.",
        "posttraumaticstressdisorder.html",
        ("47505003",),
        ("F43.1",),
    ),
    Topic(
        "adhd",
        "ADHD",
        "Attention deficit hyperactivity disorder makes it hard to focus and sit still."
        " Routines, behaviour therapy and medicine help at school, work and home.",
        "attentiondeficithyperactivitydisorder.html",
        ("406506008",),
        ("F90",),
    ),
    Topic(
        "enlarged-prostate",
        "Enlarged prostate",
        "An enlarged prostate can make urinating slow or frequent. Less fluid before bed,"
        " less caffeine and alcohol, and medicines relieve symptoms.",
        "enlargedprostatebph.html",
        ("266569009",),
        ("N40",),
    ),
    Topic(
        "fibromyalgia",
        "Fibromyalgia",
        "Fibromyalgia causes widespread pain and tiredness. Regular gentle exercise, good"
        " sleep habits and some medicines reduce pain.",
        "fibromyalgia.html",
        ("203082005",),
        ("M79.7",),
    ),
    Topic(
        "multiple-sclerosis",
        "Multiple sclerosis",
        "Multiple sclerosis damages the covering of nerves in the brain and spinal cord."
        " Disease-modifying treatment, rehabilitation and rest during flares help.",
        "multiplesclerosis.html",
        ("24700007",),
        ("G35",),
    ),
    Topic(
        "bronchitis",
        "Acute bronchitis",
        "A chest cold usually clears in two to three weeks without antibiotics. Rest, fluids"
        " and honey for the cough help; see a clinician if you have a high fever or trouble"
        " breathing.",
        "acutebronchitis.html",
        ("10509002",),
        ("J20",),
    ),
    Topic(
        "urinary-tract-infection",
        "Urinary tract infections",
        "A bladder infection causes burning and frequent urination. Finish the antibiotics"
        " you are given and drink plenty of water.",
        "urinarytractinfections.html",
        ("68566005",),
        ("N39.0", "N30"),
    ),
    Topic(
        "strep-throat",
        "Strep throat",
        "Strep throat is a bacterial infection of the throat. Take every dose of the"
        " antibiotic, rest and stay home until you have taken it for a day.",
        "strepthroat.html",
        ("43878008",),
        ("J02.0",),
    ),
    Topic(
        "ear-infection",
        "Ear infections",
        "Middle ear infections are common in children and often clear on their own. Pain"
        " relief helps; some need antibiotics.",
        "earinfections.html",
        ("65363002",),
        ("H65", "H66"),
    ),
)
"""At least the 30 most common chronic conditions, and the short-lived ones of the demo
data."""

MEDICINES: tuple[Topic, ...] = (
    Topic(
        "blood-pressure-medicines",
        "Your blood pressure medicine",
        "Take it at the same time every day, even when you feel well: high blood pressure"
        " has no symptoms. Stand up slowly if you feel dizzy, and do not stop it without"
        " talking to your clinician.",
        "bloodpressuremedicines.html",
        rxnorm=("29046", "314076", "17767", "197361", "5487", "310798"),
    ),
    Topic(
        "diabetes-medicines",
        "Your diabetes medicine",
        "Take metformin with meals to spare your stomach. Know the signs of low blood sugar"
        " if you also take insulin or other diabetes medicines.",
        "diabetesmedicines.html",
        rxnorm=("6809", "860975"),
    ),
    Topic(
        "cholesterol-medicines",
        "Your cholesterol medicine",
        "Statins lower cholesterol and protect the heart. Take them every day; tell your"
        " clinician about unexplained muscle pain.",
        "cholesterolmedicines.html",
        rxnorm=("83367", "617310", "36567", "198211"),
    ),
    Topic(
        "inhalers",
        "Using your inhaler",
        "A quick-relief inhaler opens the airways within minutes. Shake it, breathe out,"
        " press as you breathe in slowly and hold your breath for ten seconds; a spacer"
        " helps more medicine reach the lungs.",
        "asthma.html",
        rxnorm=("435", "745679"),
    ),
    Topic(
        "antidepressants",
        "Your antidepressant",
        "Antidepressants take a few weeks to work. Keep taking them as prescribed and talk"
        " to your clinician before stopping.",
        "antidepressants.html",
        rxnorm=("36437", "312938"),
    ),
    Topic(
        "thyroid-medicine",
        "Your thyroid medicine",
        "Take levothyroxine on an empty stomach, at the same time every day, apart from"
        " calcium and iron supplements.",
        "hypothyroidism.html",
        rxnorm=("10582", "966571"),
    ),
    Topic(
        "antibiotics",
        "Taking antibiotics",
        "Take every dose until the course is finished, even if you feel better. Antibiotics"
        " do not help colds or flu.",
        "antibiotics.html",
        rxnorm=("723", "308182"),
    ),
    Topic(
        "pain-relievers",
        "Pain relievers",
        "Use the lowest dose that helps for the shortest time. Anti-inflammatory pain"
        " relievers can upset the stomach; strong opioid pain medicine must be kept locked"
        " away and never shared.",
        "painrelievers.html",
        rxnorm=("5640", "310965", "4337", "197696"),
    ),
)
"""Current medications of the demo data, by ingredient and clinical drug."""
