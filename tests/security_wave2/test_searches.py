"""Includes, reverse includes, chains and ``_has`` over the wave-2 types
(Appointment, Communication, Task, PaymentReconciliation, Invoice, DocumentReference,
Binary...) by Alice's app and her caregiver: none reaches a resource of Bob's."""

from __future__ import annotations

import httpx

BOB_IDS = {
    "Appointment/b-appt",
    "Communication/b-msg",
    "Task/b-task",
    "Task/both-task",
    "PaymentReconciliation/b-payment",
    "Invoice/b-inv",
    "DocumentReference/b-doc",
    "Binary/b-bin",
    "MedicationRequest/b-mr",
    "Encounter/b-enc",
    "Immunization/b-imm",
    "Condition/b-cond",
    "Patient/bob",
    "Schedule/bob-schedule",
}


async def test_includes_and_reverse_chains_reach_no_other_patient(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    queries = (
        "Slot?_revinclude=Appointment:slot",
        "Slot?_has:Appointment:slot:patient=Patient/bob",
        "Slot?_has:Appointment:slot:actor=Patient/bob",
        "Slot?status=busy&_revinclude=Appointment:slot",
        "Schedule?_revinclude=Slot:schedule&_revinclude:iterate=Appointment:slot",
        "Practitioner?_revinclude=Communication:recipient",
        "Practitioner?_revinclude=Communication:sender",
        "Practitioner?_has:Communication:recipient:subject=Patient/bob",
        "Practitioner?_revinclude=Appointment:actor",
        "Practitioner?_revinclude=Encounter:participant",
        "MedicationRequest?_revinclude=Task:focus",
        "Invoice?_revinclude=PaymentReconciliation:request",
        "Patient?_revinclude=AuditEvent:patient",
        "Practitioner?_revinclude=AuditEvent:agent",
        "DocumentReference?_include=DocumentReference:subject",
        "Communication?_include=Communication:part-of&_include=Communication:based-on",
        "Appointment?slot.status=busy",
        "Appointment?actor=Practitioner/dr&_include=Appointment:slot",
        "Task?_include=Task:focus&_include=Task:patient",
        "Task?patient=Patient/bob",
        "Communication?subject=Patient/bob",
        "Appointment?patient=Patient/bob",
    )
    for who in (alice, mum):
        for query in queries:
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 400, 403), (query, response.text)
            if response.status_code == 200:
                found = {
                    f"{e['resource']['resourceType']}/{e['resource']['id']}"
                    for e in response.json().get("entry", [])
                }
                assert not found & BOB_IDS, (query, found & BOB_IDS)
