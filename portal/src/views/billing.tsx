// Billing: statements (Invoices with their line items) and insurance (Coverage); paying
// online needs the server's Invoice/$pay operation, when it has it.
import { search, useLoad, useSession } from "../data";
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
  return (
    <>
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
                        <td>{STATUS[i.status] || i.status}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableWrap>
            );
          }}
        </Show>
      </Section>
      <Section title="Pay online" id="bill-pay">
        {pay ? (
          <p>This server offers online payment; the portal's payment screen is coming in its next version.</p>
        ) : (
          <NotAvailable feature="Paying online" detail="Pay by the means printed on your statement." />
        )}
      </Section>
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
