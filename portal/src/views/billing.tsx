// Billing: statements (Invoices with their line items), paying an open one online
// through the server's Invoice/$pay (when it lists it: a checkout page at the payment
// processor, which sends the browser back here), payment history (PaymentReconciliation)
// and insurance (Coverage).
import { useState } from "preact/hooks";
import { refusalText, search, useLoad, useSession } from "../data";
import { conceptText, formatDate, formatMoney, referenceText, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show, TableWrap } from "../ui";

const STATUS: Record<string, string> = {
  draft: "Draft",
  issued: "Open",
  balanced: "Paid",
  cancelled: "Cancelled",
  "entered-in-error": "Withdrawn",
};

export function Billing() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const invoices = useLoad(`invoices:${patientId}`, () =>
    search(client, `Invoice?patient=${p}&_sort=-date&_count=100&_include=Invoice:issuer`),
  );
  const coverage = useLoad(`coverage:${patientId}`, () =>
    search(client, `Coverage?beneficiary=Patient/${p}&_include=Coverage:payor`),
  );
  const pay = capabilities.operation("Invoice", "pay");
  const payments = useLoad(`payments:${patientId}`, () =>
    search(client, "PaymentReconciliation?_sort=-created&_count=100", 2),
  );
  // back from the payment processor's checkout page (Invoice/$pay's return URL)
  const returned = new URLSearchParams(location.search).get("payment");
  return (
    <>
      {returned === "success" && (
        <p class="notice" role="status">
          Thank you: your payment was made. The bill shows as paid once the payment processor
          has confirmed it to your clinic.
        </p>
      )}
      {returned === "cancelled" && (
        <p class="notice" role="status">
          The payment was cancelled: nothing was charged.
        </p>
      )}
      <Section title="Statements" id="bill-statements">
        <Show loaded={invoices} what="statements">
          {(found) => {
            const list = found.filter((r) => r.resourceType === "Invoice");
            if (!list.length) return <Empty>No statements.</Empty>;
            return (
              <TableWrap label="Statements">
                <table>
                  <caption class="sr-only">Statements, newest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">Date</th>
                      <th scope="col">For</th>
                      <th scope="col">Amount</th>
                      <th scope="col">Status</th>
                      {pay && <th scope="col">Pay</th>}
                    </tr>
                  </thead>
                  <tbody>
                    {list.map((i) => (
                      <tr key={i.id}>
                        <th scope="row">{formatDate(i.date)}</th>
                        <td>
                          {(i.lineItem || [])
                            .map((l: Json) => conceptText(l.chargeItemCodeableConcept) || referenceText(l.chargeItemReference))
                            .filter(Boolean)
                            .join("; ")}
                        </td>
                        <td>{formatMoney(i.totalGross || i.totalNet)}</td>
                        <td>
                          {STATUS[i.status] || i.status}
                          {i.status === "issued" && openOf(i, payments.data) !== dueOf(i) && (
                            <div class="muted">{formatMoney(money(i, openOf(i, payments.data)))} to pay</div>
                          )}
                        </td>
                        {pay && (
                          <td>
                            {i.status === "issued" && openOf(i, payments.data) > 0 && (
                              <PayButton invoice={i} open={money(i, openOf(i, payments.data))} />
                            )}
                          </td>
                        )}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableWrap>
            );
          }}
        </Show>
      </Section>
      {pay ? (
        <Section title="Payment history" id="bill-history">
          <Payments />
        </Section>
      ) : (
        <Section title="Pay online" id="bill-pay">
          <NotAvailable feature="Paying online" detail="Pay by the means printed on your statement." />
        </Section>
      )}
      <Section title="Insurance" id="bill-insurance">
        <Show loaded={coverage} what="insurance">
          {(found) => {
            const list = found.filter((r) => r.resourceType === "Coverage");
            const payers = new Map(found.filter((r) => r.resourceType !== "Coverage").map((r) => [`${r.resourceType}/${r.id}`, r]));
            if (!list.length) return <Empty>No insurance on file.</Empty>;
            return (
              <ul class="items">
                {list.map((c) => (
                  <li key={c.id} class="insurance-card">
                    <strong>
                      {(c.payor || []).map((ref: Json) => payers.get(ref.reference)?.name || referenceText(ref)).join(", ")}
                    </strong>
                    <dl class="facts">
                      <div>
                        <dt>Plan</dt>
                        <dd>{(c.class || []).map((k: Json) => k.name || k.value).join(", ")}</dd>
                      </div>
                      <div>
                        <dt>Member ID</dt>
                        <dd>{c.subscriberId || c.identifier?.[0]?.value}</dd>
                      </div>
                      <div>
                        <dt>Valid</dt>
                        <dd>
                          {formatDate(c.period?.start)} – {formatDate(c.period?.end)}
                        </dd>
                      </div>
                      <div>
                        <dt>Status</dt>
                        <dd>{c.status}</dd>
                      </div>
                    </dl>
                  </li>
                ))}
              </ul>
            );
          }}
        </Show>
      </Section>
    </>
  );
}

/** What is due on a bill, in cents (its totalGross, else totalNet). */
function dueOf(invoice: Json): number {
  const total = invoice.totalGross || invoice.totalNet;
  return Math.round(Number(total?.value || 0) * 100);
}

/** What is left to pay on a bill, in cents: its total less the recorded payments
 * towards it (a payment's detail amount, or its whole amount when it pays one bill). */
function openOf(invoice: Json, payments: Json[] | undefined): number {
  const reference = `Invoice/${invoice.id}`;
  let paid = 0;
  for (const payment of payments || []) {
    if ((payment.status || "active") !== "active") continue;
    const details: Json[] = payment.detail || [];
    for (const detail of details) {
      if (detail.request?.reference !== reference) continue;
      const value = detail.amount?.value ?? (details.length === 1 ? payment.paymentAmount?.value : 0);
      paid += Math.round(Number(value || 0) * 100);
    }
  }
  return Math.max(0, dueOf(invoice) - paid);
}

function money(invoice: Json, cents: number): Json {
  const currency = (invoice.totalGross || invoice.totalNet)?.currency || "USD";
  return { value: cents / 100, currency };
}

/** Open a checkout session for an open bill and go to the processor's checkout page
 * (the server charges what is open on the bill). */
function PayButton({ invoice, open }: { invoice: Json; open: Json }) {
  const { client } = useSession();
  const [state, setState] = useState<{ busy?: boolean; problem?: string }>({});
  const amount = formatMoney(open);
  const pay = async () => {
    setState({ busy: true });
    try {
      const body = {
        resourceType: "Parameters",
        parameter: [{ name: "returnUrl", valueUrl: new URL("#/billing", location.href).href }],
      };
      const result = (await client.request({
        url: `Invoice/${encodeURIComponent(invoice.id)}/$pay`,
        method: "POST",
        headers: { "content-type": "application/fhir+json" },
        body: JSON.stringify(body),
      })) as Json;
      const url = (result.parameter || []).find((p: Json) => p.name === "url")?.valueUrl;
      if (!url) throw new Error("the server gave no checkout page");
      location.assign(url);
    } catch (error: any) {
      setState({
        problem: refusalText(error, {
          501: "paying online is not set up on this server",
          502: "the payment service is not answering: please try again later",
          404: "this bill was not found (it may have been withdrawn): reload the page",
          403: "you may pay only your own bills (or those of the patient you act for)",
          422: (said) =>
            /not issued|balanced|more than is open|cancelled/i.test(said)
              ? "this bill is not open for payment any more (it may be paid already): reload the page"
              : said || "the amount cannot be paid online",
        }),
      });
    }
  };
  return (
    <>
      <button type="button" class="secondary" onClick={pay} disabled={state.busy}>
        {state.busy ? "Opening the payment page…" : `Pay ${amount}`}
      </button>
      {state.problem && (
        <p class="problem" role="alert">
          Could not pay: {state.problem}.
        </p>
      )}
    </>
  );
}

/** Payments recorded for the patient (the server shows a patient only their own). */
function Payments() {
  const { client, patientId } = useSession();
  const loaded = useLoad(`payments:${patientId}`, () =>
    search(client, "PaymentReconciliation?_sort=-created&_count=50", 1),
  );
  return (
    <Show loaded={loaded} what="payments">
      {(list) =>
        list.length ? (
          <ul class="items">
            {list.map((r) => (
              <li key={r.id}>
                <strong>{formatMoney(r.paymentAmount)}</strong>{" "}
                <span class="muted">
                  paid {formatDate(r.paymentDate || r.created)}
                  {r.paymentIdentifier?.value ? `, reference ${r.paymentIdentifier.value}` : ""}
                </span>
              </li>
            ))}
          </ul>
        ) : (
          <Empty>No payments made online yet.</Empty>
        )
      }
    </Show>
  );
}
