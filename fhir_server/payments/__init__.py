"""Online payment of bills (Invoices) through a payment processor, never with card data
on the server (issue 20, "Bills and payment").

- :mod:`.processor`: what a processor does (hosted checkout, verified webhook events) and
  how one is chosen (``FHIR_SERVER_PAYMENTS``: ``off``, ``stripe``, or
  ``package.module:factory``).
- :mod:`.stripe_processor`: Stripe through the official ``stripe`` library.
- :mod:`.ledger`: what is open on an Invoice, and a payment recorded as a
  PaymentReconciliation with the Invoice's status in one store transaction, once per
  checkout session.
- :mod:`.webhook`: ``POST /payments/webhook``, the processor's signed events.

The operation that opens a checkout, ``Invoice/[id]/$pay``, is
:mod:`fhir_server.operations.pay`.
"""
