// Settings: notification preferences, the apps connected to the record and who
// accessed it. None of them has a server API yet (notifications, issue 21's account
// endpoints and audit trail): each says so rather than show made-up data.
import { NotAvailable, Section } from "../ui";

export function Settings() {
  return (
    <>
      <Section title="Notifications" id="settings-notifications">
        <NotAvailable feature="Choosing email and text message notifications" />
      </Section>
      <Section title="Connected apps" id="settings-apps">
        <NotAvailable feature="Seeing and disconnecting the apps that have access to your record" />
      </Section>
      <Section title="Who accessed my record" id="settings-audit">
        <NotAvailable feature="The record of who accessed your health record" />
      </Section>
    </>
  );
}
