// A modal confirmation (native <dialog>: focus is trapped, Escape cancels, focus returns).
import { replace } from './dom.js';

/**
 * Asks before an action. `body` is a node or text; `okLabel` names the action ("Delete task").
 * Resolves with the dialog's form element when confirmed (to read extra inputs), else null.
 */
export function confirmAction({ title, body, okLabel, danger = false }) {
  const dialog = document.getElementById('confirm-dialog');
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  document.getElementById('confirm-title').textContent = title;
  replace(document.getElementById('confirm-body'), body);
  ok.textContent = okLabel;
  ok.classList.toggle('danger', danger);
  ok.classList.toggle('primary', !danger);
  const returnFocus = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (returnFocus && returnFocus.isConnected) returnFocus.focus();
      resolve(dialog.returnValue === 'ok' ? dialog.querySelector('form') : null);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    // The safe choice has the focus: Enter alone never deletes anything.
    cancel.focus();
  });
}
