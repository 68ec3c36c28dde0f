"""The parts of the demo population (see :mod:`fhir_server.demo_data`): ``codes``
(terminology tables), ``layout`` (counts, ids, assignments), ``directory`` (clinics,
practitioners, schedules, slots), ``growth`` (a patient's body measurements over their
life), ``patient`` and ``visits`` (one patient's record)."""
