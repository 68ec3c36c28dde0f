// Small building blocks every screen uses: a loading line, an error, an empty state that
// says what is missing, and the "not available" notice of a feature the server lacks.
import type { ComponentChildren } from "preact";
import type { Loaded } from "./data";

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

export function Problem({ text }: { text: string }) {
  return (
    <p class="problem" role="alert">
      Could not load this: {text}
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** A feature the FHIR server does not offer (yet): said plainly, no made-up data. */
export function NotAvailable({ feature, detail }: { feature: string; detail?: string }) {
  return (
    <div class="unavailable" role="note">
      <p>
        <strong>{feature}</strong> is not available on this server.
      </p>
      {detail && <p class="muted">{detail}</p>}
    </div>
  );
}

/** Show loading, error or the content of a loaded value. */
export function Show<T>({
  loaded,
  what,
  children,
}: {
  loaded: Loaded<T>;
  what: string;
  children: (data: T) => ComponentChildren;
}) {
  if (loaded.loading) return <Loading what={what} />;
  if (loaded.error !== undefined) return <Problem text={loaded.error} />;
  return <>{children(loaded.data as T)}</>;
}

export function Section({
  title,
  id,
  children,
}: {
  title: string;
  id: string;
  children: ComponentChildren;
}) {
  return (
    <section aria-labelledby={id} class="card">
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

/** A table that may scroll sideways on a narrow screen: a focusable, named region so
 * that keyboard users can scroll it too (WCAG 2.1.1). */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}
