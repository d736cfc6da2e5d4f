// A confirmation as a modal <dialog> (keyboard: Escape cancels, the focus
// starts on Cancel); resolves true only for the confirming button.

import { h } from './dom.js';

export function confirmDialog(title, text, confirmText) {
    const titleEl = h('h2', { id: 'confirm-title', text: title });
    const textEl = h('p', { id: 'confirm-text', text });
    const cancel = h('button', { type: 'button', text: 'Cancel',
                                 dataset: { action: 'cancel' } });
    const confirm = h('button', { type: 'button', class: 'danger',
                                  text: confirmText,
                                  dataset: { action: 'confirm' } });
    const dialog = h('dialog', { class: 'confirm-dialog', role: 'alertdialog',
                                 'aria-labelledby': 'confirm-title',
                                 'aria-describedby': 'confirm-text' },
        titleEl, textEl, h('div', { class: 'actions' }, confirm, cancel));

    return new Promise((resolve) => {
        let answer = false;
        cancel.addEventListener('click', () => dialog.close());
        confirm.addEventListener('click', () => { answer = true; dialog.close(); });
        dialog.addEventListener('close', () => {
            dialog.remove();
            resolve(answer);
        });
        document.body.append(dialog);
        dialog.showModal();
        cancel.focus();
    });
}
