"""Official R4 examples that are genuinely invalid, with the reason for each.

The validator must reject these; every other example must pass (the validator covers
every R4 resource type: of the 5,306 examples, 5,290 are valid).
"""

KNOWN_INVALID = {
    "ImplementationGuide-fhir.json": "lacks the required name and status",
    "ig-r4.json": "the same ImplementationGuide: lacks the required name and status",
    "Questionnaire-qs1.json": "its nested items lack the required linkId",
    "CodeSystem-v2-0550.json": "codes end in a no-break space (mojibake 'Â\\xa0'): a code has "
    "no leading or trailing whitespace",
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
