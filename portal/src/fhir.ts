// Reading FHIR R4 data types as people read them (https://hl7.org/fhir/R4/datatypes.html):
// names, code displays (never bare codes when a display or text exists), dates in the
// browser's locale, quantities with their units, money with its currency.

export type Json = Record<string, any>;

export interface Coding {
  system?: string;
  code?: string;
  display?: string;
}
export interface CodeableConcept {
  coding?: Coding[];
  text?: string;
}

/** The words of a CodeableConcept: its text, else the first coding's display, else its code. */
export function conceptText(concept: CodeableConcept | undefined | null, fallback = ""): string {
  if (!concept) return fallback;
  if (concept.text) return concept.text;
  const codings = concept.coding || [];
  const shown = codings.find((c) => c.display);
  if (shown?.display) return shown.display;
  return codings.find((c) => c.code)?.code || fallback;
}

/** The first of several concepts that has words. */
export function conceptsText(concepts: CodeableConcept[] | undefined, fallback = ""): string {
  for (const concept of concepts || []) {
    const text = conceptText(concept);
    if (text) return text;
  }
  return fallback;
}

/** "Given Family" of the official (else first) HumanName. */
export function humanName(names: Json[] | undefined): string {
  if (!names || !names.length) return "";
  const name = names.find((n) => n.use === "official") || names.find((n) => n.use !== "old") || names[0];
  if (name.text) return name.text;
  return [...(name.given || []), name.family].filter(Boolean).join(" ");
}

const dateOnly = /^\d{4}(-\d{2}(-\d{2})?)?$/;

/** A FHIR date or dateTime in the browser's locale ("Mar 4, 2024"; with the time if it has one). */
export function formatDate(value: string | undefined, withTime = false): string {
  if (!value) return "";
  if (dateOnly.test(value)) {
    const [y, m, d] = value.split("-").map(Number);
    if (!m) return String(y);
    const date = new Date(y, m - 1, d || 1);
    const options: Intl.DateTimeFormatOptions = d
      ? { year: "numeric", month: "short", day: "numeric" }
      : { year: "numeric", month: "long" };
    return date.toLocaleDateString(undefined, options);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return withTime
    ? date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })
    : date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/** When something happened: the first of the usual date elements a resource has. */
export function whenOf(resource: Json): string | undefined {
  return (
    resource.effectiveDateTime ||
    resource.effectivePeriod?.start ||
    resource.issued ||
    resource.occurrenceDateTime ||
    resource.authoredOn ||
    resource.recordedDate ||
    resource.onsetDateTime ||
    resource.period?.start ||
    resource.date ||
    resource.start
  );
}

/** A Quantity as "7.2 %" or "120 mm[Hg]" (the unit as written, else its code). */
export function formatQuantity(q: Json | undefined): string {
  if (!q || q.value === undefined) return "";
  const unit = q.unit || q.code || "";
  const comparator = q.comparator || "";
  return `${comparator}${formatNumber(q.value)}${unit ? ` ${unit}` : ""}`;
}

export function formatNumber(value: number): string {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: 6 });
}

/** Money in the browser's locale with its currency ("$1,234.50"). */
export function formatMoney(money: Json | undefined): string {
  if (!money || money.value === undefined) return "";
  try {
    return Number(money.value).toLocaleString(undefined, {
      style: "currency",
      currency: money.currency || "USD",
    });
  } catch {
    return `${money.value} ${money.currency || ""}`.trim();
  }
}

/** The display of a Reference, else its reference. */
export function referenceText(ref: Json | undefined): string {
  if (!ref) return "";
  return ref.display || ref.reference || "";
}

/** The resources of a searchset Bundle (or pages of them), optionally of one type. */
export function entriesOf(bundles: Json | Json[], type?: string): Json[] {
  const pages = Array.isArray(bundles) ? bundles : [bundles];
  const found: Json[] = [];
  for (const page of pages) {
    for (const entry of page?.entry || []) {
      const resource = entry.resource;
      if (resource && (!type || resource.resourceType === type)) found.push(resource);
    }
  }
  return found;
}

/** Sort newest first by the resource's date. */
export function newestFirst(resources: Json[]): Json[] {
  return [...resources].sort((a, b) => (whenOf(b) || "").localeCompare(whenOf(a) || ""));
}
