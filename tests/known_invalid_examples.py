"""Official R4 examples that are genuinely invalid, with the reason for each.

The validator must reject these; every other example must pass (the validator covers
every R4 resource type: of the 5,306 examples, 5,286 are valid).
"""

KNOWN_INVALID = {
    "ImplementationGuide-fhir.json": "lacks the required name and status",
    "ig-r4.json": "the same ImplementationGuide: lacks the required name and status",
    "Questionnaire-qs1.json": "its nested items lack the required linkId",
    "CodeSystem-v2-0550.json": "codes end in a no-break space (mojibake 'Â\\xa0'): a code has "
    "no leading or trailing whitespace",
    "Bundle-dataelements.json": "a collection whose entries repeat fullUrls without versions "
    "(bdl-7: a fullUrl is unique in a Bundle)",
    **{
        name: "a fullUrl that is a RESTful URL of another id than its resource's (R4 "
        "Bundle.entry.fullUrl: it SHALL NOT disagree with the id in the resource)"
        for name in (
            "Bundle-lri-example.json",
            "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json",
            "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json",
        )
    },
    "Bundle-v2-valuesets.json": "holds CodeSystem v2-0550, whose codes end in a no-break space",
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": (
        "its id is 66 characters long; an id has at most 64"
    ),
    **{
        f"SearchParameter-{vs}-extensions-{type_}-{code}.json": "lacks the required base"
        for vs, type_ in (("codesystem", "CodeSystem"), ("valueset", "ValueSet"))
        for code in ("author", "effective", "end", "keyword", "workflow")
    },
}
