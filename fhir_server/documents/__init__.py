"""Documents of the patient portal: uploads, downloads, generated documents and
patient education (issue 20, "Documents" and "Education").

- :mod:`.uploads`: what a document upload may be (types, size); the workflow rule
  ``fhir_server.workflows.documents`` applies it and moves inline bytes into a Binary;
- :mod:`.binary_raw`: ``GET Binary/[id]`` as the raw bytes when ``Accept`` asks for its
  content type (https://hl7.org/fhir/R4/binary.html#rest);
- :mod:`.record`: what a patient's documents are built from, read through the caller's
  guarded store;
- :mod:`.ips`: the International Patient Summary document Bundle
  (https://hl7.org/fhir/uv/ips/);
- :mod:`.pdf`: PDF rendering with fpdf2 (summary, immunization record, visit summary);
- :mod:`.visit`: the visit summary of an Encounter; :mod:`.auto_visit` files it when an
  Encounter is finished (``FHIR_SERVER_AUTO_VISIT_SUMMARY=on``);
- :mod:`.catalogue`: the patient-education catalogue (DocumentReferences) and its
  starter content (:mod:`.catalogue_data`).
"""
