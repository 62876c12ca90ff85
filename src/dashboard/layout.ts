/**
 * The page shell of the dashboard: landmarks (skip link, banner, navigation, main, contentinfo), the signed-in
 * staff member with a sign-out form, a "Demo" label for a demo practice, and the one inline stylesheet (allowed by
 * a per-response CSP nonce; no external CSS, fonts or scripts).
 */
import { html, Html } from './html.ts';

/** The pages in the navigation, in order. */
export const NAV = [
  { id: 'overview', href: '/dashboard', label: 'Overview' },
  { id: 'worklist', href: '/dashboard/worklist', label: 'Worklist' },
  { id: 'balances', href: '/dashboard/balances', label: 'Balances' },
  { id: 'connectors', href: '/dashboard/connectors', label: 'Connectors' },
  { id: 'outbox', href: '/dashboard/outbox', label: 'Outbox' },
  { id: 'policies', href: '/dashboard/policies', label: 'Policies' },
] as const;

/** Which navigation entry a page belongs to. */
export type NavId = (typeof NAV)[number]['id'];

/** What every page shell shows. */
export interface Shell {
  title: string;
  nonce: string;
  practiceName: string;
  demo: boolean;
  /** Absent on the sign-in page. */
  staff?: { name: string; csrf: string };
  active?: NavId;
  /** A line about the practice on every page while it applies (`The demo practice is still loading: …`). */
  status?: string;
  /** A one-line message after an action (`Dispute resolved: hold lifted`). */
  notice?: { kind: 'ok' | 'error'; text: string };
}

const CSS = `
:root{color-scheme:light;--ink:#1b1f24;--muted:#4a5361;--line:#c9d1dc;--bg:#f6f8fa;--card:#fff;--brand:#0b4f9c;--ok:#0f6b3a;--bad:#a1141b;--focus:#f2a900}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
a{color:var(--brand)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,summary:focus-visible,textarea:focus-visible,.table-wrap:focus-visible{outline:3px solid var(--focus);outline-offset:2px;box-shadow:0 0 0 5px #1b1f24}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5rem 1rem}
.skip:focus{left:1rem;top:1rem;z-index:2}
header{background:#0b2f5b;color:#fff;padding:.5rem 1.5rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between}
header a{color:#fff}
.brand{font-weight:700;font-size:1.15rem}
.demo{background:#ffd34d;color:#1b1f24;font-weight:700;padding:.1rem .5rem;border-radius:.25rem;margin-left:.5rem}
nav.main ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem}
nav.main a{display:block;padding:.4rem .7rem;border-radius:.3rem;text-decoration:none}
nav.main a[aria-current=page]{background:#fff;color:#0b2f5b;font-weight:600}
.who{display:flex;gap:.75rem;align-items:center}
main{max-width:76rem;margin:0 auto;padding:1.5rem}
h1{margin-top:0}
.notice{padding:.6rem 1rem;border-radius:.3rem;border:2px solid var(--ok);background:#e9f7ef}
.notice.error{border-color:var(--bad);background:#fdecee}
.status{padding:.6rem 1rem;border-radius:.3rem;border:2px solid #8a5a00;background:#fff4d6}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:1rem;padding:0;list-style:none}
.figures li{background:var(--card);border:1px solid var(--line);border-radius:.4rem;padding:.75rem 1rem}
.figures .value{display:block;font-size:1.5rem;font-weight:700}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(30rem,1fr));gap:1rem}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:.4rem;padding:1rem}
figcaption{font-weight:600;margin-bottom:.5rem}
svg text{font-family:system-ui,sans-serif}
footer{max-width:76rem;margin:0 auto;padding:0 1.5rem 1.5rem}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:var(--card);margin:.5rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.4rem 0}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:#e8edf3}
tbody th{font-weight:500}
td.empty{color:var(--muted);font-style:italic}
.muted{color:var(--muted)}
form.inline{display:inline-flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:0}
label{font-weight:600}
input,select,textarea{font:inherit;padding:.35rem .5rem;border:1px solid #6b7685;border-radius:.3rem}
button{font:inherit;padding:.35rem .8rem;border-radius:.3rem;border:1px solid var(--brand);background:var(--brand);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--brand)}
header button{background:#fff;color:#0b2f5b;border-color:#fff}
.pager{display:flex;gap:1rem;margin-bottom:1rem}
.pager span{color:var(--muted)}
.filters{display:flex;flex-wrap:wrap;gap:.75rem;align-items:end;margin-bottom:1rem}
.filters div{display:flex;flex-direction:column}
pre{white-space:pre-wrap;background:#fff;border:1px solid var(--line);padding:.5rem;border-radius:.3rem}
.signin{max-width:28rem;margin:3rem auto;background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1.5rem}
.signin input{width:100%;margin:.3rem 0 1rem}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

/** The CSRF hidden field every form carries. */
export function csrfField(token: string): Html {
  return html`<input type="hidden" name="csrf" value="${token}">`;
}

/** A whole page. */
export function page(shell: Shell, body: Html): string {
  const title = `${shell.title} · ${shell.practiceName}${shell.demo ? ' (Demo)' : ''} · Settle`;
  return `<!doctype html>${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${title}</title>
<style nonce="${shell.nonce}">${new Html(CSS)}</style>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<div class="brand">Settle · ${shell.practiceName}${shell.demo ? html`<span class="demo" title="Demo practice: nothing is sent to anyone">Demo</span>` : ''}</div>
${shell.staff
    ? html`<nav class="main" aria-label="Dashboard"><ul>${NAV.map((n) => html`<li><a href="${n.href}"${n.id === shell.active ? html` aria-current="page"` : ''}>${n.label}</a></li>`)}</ul></nav>
<div class="who"><span>Signed in as ${shell.staff.name}</span><form class="inline" method="post" action="/dashboard/logout">${csrfField(shell.staff.csrf)}<button type="submit">Sign out</button></form></div>`
    : ''}
</header>
<main id="main" tabindex="-1">
${shell.status ? html`<p class="status" role="status">${shell.status}</p>` : ''}
${shell.notice ? html`<p class="notice${shell.notice.kind === 'error' ? ' error' : ''}" role="status">${shell.notice.text}</p>` : ''}
${body}
</main>
<footer class="muted"><p>Settle — ${shell.demo ? 'demo practice: nothing leaves this machine.' : 'staff dashboard.'} Patient details shown here are recorded in the audit trail.</p></footer>
</body>
</html>`.text}`;
}
